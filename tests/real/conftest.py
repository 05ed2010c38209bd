"""Fixtures of the real-services lane (docs/real-services.md).

- ``real_services`` (session): Keystone, Glance and Cinder started once for the session
  (tests/real/services.py), stopped at its end; the services' virtualenv is built first when
  it is not in the cache (tests/real/venv.py; ``.ci/run`` builds it before the suite).
- ``real_clouds_yaml`` (session): a clouds.yaml whose ``target`` entry is their admin.

When what the services need is missing (the virtualenv cannot be built, PostgreSQL or
RabbitMQ is down) the tests are skipped, naming it; under ``CI=true`` that is a failure. A
service that was there but did not start always fails the test, with the end of each log.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.real.services import RealServices, ServicesError, ServicesUnavailable
from tests.real.venv import VenvError, ensure_venv, venv_path

CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    if CI:
        pytest.fail(f"{reason} (CI=true: the real-services lane must run)", pytrace=False)
    pytest.skip(f"real services unavailable: {reason}")


@pytest.fixture(scope="session")
def real_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServices]:
    try:
        venv = ensure_venv(log=Path(f"{venv_path()}.log"))
    except (VenvError, OSError) as exc:
        unavailable(f"the services' virtualenv {venv_path()} cannot be built: {exc}")
    services = RealServices(tmp_path_factory.mktemp("real-services"), venv)
    # Stopped at exit too: a session ended by Ctrl-C may skip fixture teardown.
    atexit.register(services.stop)
    try:
        services.start()
    except ServicesUnavailable as exc:
        unavailable(str(exc))
    except ServicesError as exc:
        pytest.fail(str(exc), pytrace=False)
    print(f"real services up: {services.timings}")
    try:
        yield services
    finally:
        services.stop()
        atexit.unregister(services.stop)


@pytest.fixture(scope="session")
def real_clouds_yaml(real_services: RealServices,
                     tmp_path_factory: pytest.TempPathFactory) -> Path:
    return real_services.write_clouds_yaml(tmp_path_factory.mktemp("real-clouds") /
                                           "clouds.yaml")
