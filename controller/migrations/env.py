"""Alembic environment: always runs on a connection handed over by controller.migrations."""

from alembic import context

from controller.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through controller.migrations (it provides the connection)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
