"""WSGI entry of Keystone for gunicorn (runs in the services' virtualenv, tests/real/venv.py).

Keystone's own entry (keystone.wsgi.api) parses ``sys.argv`` with oslo.config, which holds
gunicorn's options here and makes it exit: parse none. The configuration file is named by
``OS_KEYSTONE_CONFIG_DIR`` / ``OS_KEYSTONE_CONFIG_FILES``, as for Keystone's own entry.
"""

import sys

sys.argv = sys.argv[:1]

from keystone.server import wsgi  # noqa: E402

application = wsgi.initialize_public_application()
