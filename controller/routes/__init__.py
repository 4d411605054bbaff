"""REST routes, one module per resource. Handlers parse, call a service, and serialise; nothing more."""
