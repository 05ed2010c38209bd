"""WSGI entry of cinder-api for gunicorn (runs in the services' virtualenv).

cinder.wsgi.api parses ``sys.argv`` with oslo.config, which holds gunicorn's options here:
replace them with the configuration file named by ``MIGRATOR_REAL_CINDER_CONF``.
"""

import os
import sys

sys.argv = ["cinder-api", "--config-file", os.environ["MIGRATOR_REAL_CINDER_CONF"]]

from cinder.wsgi.api import application  # noqa: E402

__all__ = ["application"]
