"""migrator: move OpenStack tenants, images and volumes from a legacy cloud to a modern one."""

__version__ = "0.1.0"
