"""Alembic revisions of the state database, one module per revision ("0001_initial", ...)."""
