"""Alembic environment and revisions of the state database.

Shipped inside the package as ``migrator.migrations`` (pyproject maps this folder there), so an
installed migrator can upgrade its database without the source tree or an ``alembic.ini``:
``migrator.store.schema`` builds the Alembic configuration in code.
"""
