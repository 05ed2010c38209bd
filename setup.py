"""Package list only; everything else is in pyproject.toml.

The Alembic environment lives at the repository root (``migrations/``) and is shipped as
``migrator.migrations`` through ``package-dir``. A ``find`` directive in pyproject.toml cannot
add packages outside its ``where``, and a static list would silently drop every new
subpackage, so the list is computed here.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(where="src"),
        "migrator.migrations",
        "migrator.migrations.versions",
    ]
)
