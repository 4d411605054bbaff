"""The API's declared shapes: request bodies and queries (the typed commands services take) and responses."""
