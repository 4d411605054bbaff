"""Business rules, free of HTTP: each module serves one resource or one flow."""
