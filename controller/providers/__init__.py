"""Cloud providers: where a node's machine comes from (``local`` processes or ``ec2`` instances)."""
