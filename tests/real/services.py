"""Real Keystone, Glance and Cinder on loopback: the target cloud of the real-services lane.

``RealServices(root, venv).start()`` runs, from the services' own virtualenv
(tests/real/venv.py):

- Keystone (gunicorn, tests/real/support/keystone_wsgi.py), Glance (gunicorn,
  ``glance.wsgi.api``) and cinder-api (gunicorn, support/cinder_wsgi.py), each on a socket
  this process bound to a free loopback port and handed over (``--bind fd://N``: no port race);
- cinder-volume with support/file_volume_driver.py (volumes as sparse files, image <-> volume
  copies through Cinder's Glance client), then cinder-scheduler once cinder-volume listens
  (see _spawn_scheduler: started the other way round, or together, the scheduler may not
  know the volume service for a minute);
- Keystone, Glance and Cinder each on a database of their own on the local PostgreSQL
  (``migrator_real_<token>_<service>``, dropped by ``stop``); Cinder's RPC on the local
  RabbitMQ in a virtual host of its own (``migrator-real-<token>``, deleted by ``stop``), so
  that parallel runs never cross.

Keystone is bootstrapped (admin user and project, roles, region ``RegionOne``, the identity
endpoint), then given over its API a ``service`` project, the ``glance`` and ``cinder``
service users and the catalog entries ``image`` and ``volumev3`` + ``block-storage`` (Cinder's
URL without a project id, ``/v3``, as real deployments register it). ``start`` returns once a
token is issued, Glance lists images and a probe volume could be scheduled, created and
deleted (until the scheduler has heard of the volume service a volume goes to ``error``: the
probe retries).

Every process is started in a session of its own and stopped by its id (SIGTERM to its
process group, SIGKILL after a grace period) by ``stop``, which is also run when ``start``
fails or is interrupted. The logs stay in ``root/logs``; a failure's message carries their
last lines.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests
import yaml
from sqlalchemy.engine import URL, make_url

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
SUPPORT = HERE / "support"
DEFAULT_PG = os.environ.get("MIGRATOR_TEST_PG",
                            "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DEFAULT_RABBIT = os.environ.get("MIGRATOR_TEST_RABBIT", "rabbit://guest:guest@127.0.0.1:5672")
REGION = "RegionOne"
SERVICES = ("keystone", "glance", "cinder")
CONFIG_FILES = {"keystone": "keystone.conf", "glance": "glance-api.conf",
                "cinder": "cinder.conf"}
# What the template databases hold; bump it when _build_template changes.
TEMPLATE_VERSION = "1"
# The template Keystone's admin password and identity URL, replaced by each run's own as
# soon as its Keystone answers (_take_over): the template is shared by every run.
TEMPLATE_ADMIN_PASSWORD = "migrator-real-template"
PLACEHOLDER_URL = "http://127.0.0.1:9/v3"
# Environment variables of the calling process that must not reach the services.
_CLEAN_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME")


class ServicesUnavailable(Exception):
    """What the services need is not there (PostgreSQL, RabbitMQ, the virtualenv)."""


class ServicesError(Exception):
    """The services were there but did not start (or stop) as they should; the message holds
    the end of every log."""


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    # gunicorn's graceful stop (SIGTERM) waits its whole graceful timeout even when its
    # worker is idle; SIGINT is its quick stop. The oslo services stop at once on SIGTERM.
    stop_signal: signal.Signals = signal.SIGTERM


@dataclass
class Timings:
    """Seconds from ``start`` to each milestone (reported by the tests, never asserted)."""

    templates_built: float = 0.0  # 0: the template databases were there
    prepared: float = 0.0  # databases copied, Keystone and Glance started, vhost made
    first_token: float = 0.0  # the first green request: a token from Keystone
    catalog: float = 0.0
    glance: float = 0.0
    volume_scheduled: float = 0.0  # the probe volume was available
    probe_attempts: int = 0
    stopped: float = 0.0  # seconds ``stop`` took


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def fernet_key() -> str:
    """A Fernet key as Keystone's key repositories hold them (32 random bytes, urlsafe
    base64): written here instead of two ``keystone-manage`` runs (seconds each)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"({exc})"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class RealServices:
    root: Path
    venv: Path
    pg_url: str = DEFAULT_PG
    rabbit_url: str = DEFAULT_RABBIT
    timeout: float = 240.0  # a busy two-core machine starts five Python services slowly
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    service_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    processes: list[Process] = field(default_factory=list)
    databases: dict[str, str] = field(default_factory=dict)  # service -> database name
    vhost: str | None = None
    timings: Timings = field(default_factory=Timings)
    admin_project_id: str = ""
    _sockets: dict[str, socket.socket] = field(default_factory=dict)
    _ports: dict[str, int] = field(default_factory=dict)
    _stopped: bool = False
    # Spawning and stopping exclude each other: nothing is started once ``stop`` began.
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _background: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(1))

    # -- addresses ---------------------------------------------------------------------------
    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self._ports[service]}"

    @property
    def keystone_url(self) -> str:
        return self.url("keystone")

    @property
    def glance_url(self) -> str:
        return self.url("glance")

    @property
    def cinder_url(self) -> str:
        return self.url("cinder")

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def volumes_dir(self) -> Path:
        """Where the file volume driver keeps the volumes (``volume-<id>`` files)."""
        return self.root / "cinder" / "volumes"

    def cloud_entry(self) -> dict[str, Any]:
        """The clouds.yaml entry of the admin (project ``admin``, domain ``Default``)."""
        return {"auth": {"auth_url": f"{self.keystone_url}/v3", "username": "admin",
                         "password": self.admin_password, "project_name": "admin",
                         "user_domain_name": "Default", "project_domain_name": "Default"},
                "region_name": REGION, "identity_api_version": "3", "interface": "public"}

    # -- start -------------------------------------------------------------------------------
    def start(self) -> RealServices:
        began = time.monotonic()
        try:
            self._check_prerequisites()
            for name in ("keystone", "glance", "cinder"):
                self._sockets[name] = _free_socket()
                self._ports[name] = self._sockets[name].getsockname()[1]
            for sub in ("logs", "etc", "keystone", "glance", "cinder"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            self._write_keys()
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                # Keystone and Glance need no RabbitMQ: they start while rabbitmqctl works.
                vhost = pool.submit(self._create_vhost)
                self._ensure_templates()
                self._create_databases()
                self._write_configs()
                self._gunicorn("keystone", "keystone_wsgi:application", threads=8)
                self._gunicorn("glance", "glance.wsgi.api:application", threads=8)
                vhost.result()
            self.timings.prepared = time.monotonic() - began
            self._spawn_cinder()
            deadline = began + self.timeout
            # cinder-scheduler waits for cinder-volume beside Keystone's start.
            scheduler = self._background.submit(self._spawn_scheduler, deadline)
            token = self._wait_for_token(deadline, TEMPLATE_ADMIN_PASSWORD)
            self.timings.first_token = time.monotonic() - began
            self._take_over(token)
            token = self._wait_for_token(deadline)
            self._register_catalog(token)
            self.timings.catalog = time.monotonic() - began
            token = self._wait_for_token(deadline)  # scoped again: the catalog is in it now
            self._wait_for_glance(token, deadline)
            self.timings.glance = time.monotonic() - began
            scheduler.result()
            self._wait_for_volume_service(token, deadline)
            self.timings.volume_scheduled = time.monotonic() - began
        except ServicesUnavailable:
            self.stop()
            raise
        except BaseException as exc:
            report = self.report()
            try:
                self.stop()
            except Exception as stop_exc:  # the start failure is the news; keep both
                report += f"\n(stop failed too: {stop_exc})"
            if isinstance(exc, ServicesError | requests.RequestException | OSError
                          | subprocess.SubprocessError | psycopg.Error):
                raise ServicesError(f"the real services did not start: {exc}\n{report}"
                                    ) from exc
            raise
        return self

    def _check_prerequisites(self) -> None:
        for tool in ("gunicorn", "keystone-manage", "glance-manage", "cinder-manage",
                     "cinder-volume", "cinder-scheduler"):
            if not (self.venv / "bin" / tool).is_file():
                raise ServicesUnavailable(f"{self.venv}: no {tool} in the services' virtualenv")
        try:
            psycopg.connect(self._pg_conninfo(), connect_timeout=3).close()
        except psycopg.Error as exc:
            raise ServicesUnavailable(f"PostgreSQL at {self._pg_url().render_as_string()} "
                                      f"is unreachable: {exc}") from exc
        rabbit = make_url(self.rabbit_url.replace("rabbit://", "amqp://", 1))
        try:
            socket.create_connection((rabbit.host or "127.0.0.1", rabbit.port or 5672),
                                     timeout=3).close()
        except OSError as exc:
            raise ServicesUnavailable(f"RabbitMQ at {rabbit.host}:{rabbit.port} is "
                                      f"unreachable: {exc}") from exc
        if shutil.which("rabbitmqctl") is None:
            raise ServicesUnavailable("rabbitmqctl is not installed: a virtual host of its "
                                      "own for Cinder cannot be made")

    # -- PostgreSQL and RabbitMQ ---------------------------------------------------------------
    def _pg_url(self) -> URL:
        return make_url(self.pg_url)

    def _pg_conninfo(self, database: str | None = None) -> str:
        url = self._pg_url()
        return psycopg.conninfo.make_conninfo(
            host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username or "postgres",
            password=url.password or "", dbname=database or url.database or "postgres")

    def _template(self, service: str) -> str:
        return f"migrator_real_tpl_{self.template_key}_{service}"

    @property
    def template_key(self) -> str:
        """Names the template databases: one set per services' virtualenv (whose name holds
        the hash of the pinned requirements) and version of what is put in them."""
        digest = hashlib.sha256(f"{self.venv.name}:{TEMPLATE_VERSION}".encode()).hexdigest()
        return digest[:12]

    def _ensure_templates(self) -> None:
        """Template databases, migrated (and Keystone bootstrapped) once per virtualenv, so that
        a start copies them (``CREATE DATABASE ... TEMPLATE``, a fraction of a second) instead
        of running three schema migrations and a bootstrap (half a minute of CPU). They are a
        cache, like the virtualenv: kept on the server, rebuilt when the key changes. Built
        under an advisory lock (parallel runs wait for one build) as ``<name>_building``,
        renamed when complete."""
        with psycopg.connect(self._pg_conninfo(), autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (self.template_key,))
            try:
                existing = {row[0] for row in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s",
                    (f"migrator_real_tpl_{self.template_key}_%",))}
                missing = [s for s in SERVICES if self._template(s) not in existing]
                if not missing:
                    return
                began = time.monotonic()
                etc = self.root / "etc-template"
                etc.mkdir(parents=True, exist_ok=True)
                for service in missing:
                    building = f"{self._template(service)}_building"
                    conn.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')  # type: ignore[arg-type]
                    conn.execute(f'CREATE DATABASE "{building}"')  # type: ignore[arg-type]
                    self._render(service, building, etc)
                with concurrent.futures.ThreadPoolExecutor(3) as pool:
                    jobs = [pool.submit(self._build_template, service, etc)
                            for service in missing]
                    for job in jobs:
                        job.result()
                for service in missing:
                    conn.execute(f'ALTER DATABASE "{self._template(service)}_building" '  # type: ignore[arg-type]
                                 f'RENAME TO "{self._template(service)}"')
                self.timings.templates_built = time.monotonic() - began
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (self.template_key,))

    def _build_template(self, service: str, etc: Path) -> None:
        conf = str(etc / CONFIG_FILES[service])
        if service == "glance":
            self._run("template-glance-db-sync", "glance-manage", "--config-file", conf,
                      "db_sync")
        elif service == "cinder":
            self._run("template-cinder-db-sync", "cinder-manage", "--config-file", conf,
                      "db", "sync")
        else:
            self._run("template-keystone-db-sync", "keystone-manage", "--config-file", conf,
                      "db_sync")
            # The identity endpoints get this run's URL, the admin this run's password, once
            # Keystone answers (_take_over).
            self._run("template-keystone-bootstrap", "keystone-manage", "--config-file", conf,
                      "bootstrap", "--bootstrap-password", TEMPLATE_ADMIN_PASSWORD,
                      "--bootstrap-admin-url", PLACEHOLDER_URL,
                      "--bootstrap-internal-url", PLACEHOLDER_URL,
                      "--bootstrap-public-url", PLACEHOLDER_URL,
                      "--bootstrap-region-id", REGION)

    def _create_databases(self) -> None:
        with psycopg.connect(self._pg_conninfo(), autocommit=True) as conn:
            for service in SERVICES:
                name = f"migrator_real_{self.token}_{service}"
                for attempt in range(20):
                    try:
                        conn.execute(f'CREATE DATABASE "{name}" '  # type: ignore[arg-type]
                                     f'TEMPLATE "{self._template(service)}"')
                        break
                    except psycopg.errors.ObjectInUse:
                        # Another run is copying the same template this instant.
                        if attempt == 19:
                            raise
                        time.sleep(0.25)
                self.databases[service] = name

    def _drop_databases(self) -> None:
        if not self.databases:
            return
        with psycopg.connect(self._pg_conninfo(), autocommit=True) as conn:
            for name in self.databases.values():
                # FORCE: a service killed mid-transaction may still hold a connection.
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]
        self.databases.clear()

    def _rabbitmqctl(self, *args: str) -> None:
        result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True,
                                timeout=120, stdin=subprocess.DEVNULL, check=False)
        if result.returncode != 0:
            raise ServicesError(f"rabbitmqctl {' '.join(args)}: exit {result.returncode}: "
                                f"{(result.stderr or result.stdout).strip()[-500:]}")

    def _create_vhost(self) -> None:
        vhost = f"migrator-real-{self.token}"
        self._rabbitmqctl("add_vhost", vhost)
        self.vhost = vhost
        user = make_url(self.rabbit_url.replace("rabbit://", "amqp://", 1)).username or "guest"
        self._rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")

    def _transport_url(self) -> str:
        return f"{self.rabbit_url.rstrip('/')}/{self.vhost or f'migrator-real-{self.token}'}"

    # -- configuration -----------------------------------------------------------------------
    def _conf(self, name: str) -> Path:
        return self.root / "etc" / name

    def _render(self, service: str, database: str, etc: Path) -> None:
        fields = {"venv": str(self.venv), "keystone_url": self.keystone_url,
                  "glance_url": self.glance_url, "service_password": self.service_password,
                  "host": f"migrator-real-{self.token}", "transport_url": self._transport_url(),
                  "state": str(self.root / service)}
        url = self._pg_url().set(drivername="postgresql+psycopg2", database=database)
        name = CONFIG_FILES[service]
        text = (TEMPLATES / name).read_text().format(
            **fields, database=url.render_as_string(hide_password=False))
        (etc / name).write_text(text)

    def _write_configs(self) -> None:
        for service in SERVICES:
            self._render(service, self.databases[service], self.root / "etc")

    def _write_keys(self) -> None:
        """Keystone's Fernet and credential keys (the bootstrap of a template needs them)."""
        for repository in ("fernet-keys", "credential-keys"):
            folder = self.root / "keystone" / repository
            folder.mkdir(mode=0o700, exist_ok=True)
            for index in ("0", "1"):  # 0 staged, the highest primary
                (folder / index).write_text(fernet_key())
                (folder / index).chmod(0o600)

    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: os.environ[k] for k in _CLEAN_ENV if k in os.environ}
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), env.get("PATH", "/usr/bin:/bin")])
        env["PYTHONPATH"] = str(SUPPORT)
        env["PYTHONUNBUFFERED"] = "1"
        env["OS_KEYSTONE_CONFIG_DIR"] = str(self.root / "etc")
        env["OS_KEYSTONE_CONFIG_FILES"] = "keystone.conf"
        env["OS_GLANCE_CONFIG_DIR"] = str(self.root / "etc")
        env["MIGRATOR_REAL_CINDER_CONF"] = str(self._conf("cinder.conf"))
        return {**env, **extra}

    # -- processes ---------------------------------------------------------------------------
    def _run(self, name: str, tool: str, *args: str) -> None:
        """A one-shot command of the services (db sync, bootstrap); its output in a log."""
        log = self.logs / f"{name}.log"
        with open(log, "wb") as out:
            result = subprocess.run([str(self.venv / "bin" / tool), *args], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self._env(), cwd=self.root, timeout=self.timeout,
                                    check=False)
        if result.returncode != 0:
            raise ServicesError(f"{tool} {' '.join(args[2:])} exited {result.returncode}:\n"
                                f"{tail(log)}")

    def _spawn(self, name: str, cmd: list[str], *, pass_fds: tuple[int, ...] = (),
               stop_signal: signal.Signals = signal.SIGTERM) -> None:
        log = self.logs / f"{name}.log"
        with self._lock, open(log, "ab") as out:
            if self._stopped:
                raise ServicesError(f"{name} not started: the services are being stopped")
            popen = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self._env(), cwd=self.root,
                                     pass_fds=pass_fds, start_new_session=True)
            self.processes.append(Process(name, popen, log, stop_signal))

    def _gunicorn(self, name: str, app: str, threads: int) -> None:
        sock = self._sockets[name]
        self._spawn(name, [
            str(self.venv / "bin" / "gunicorn"), "--bind", f"fd://{sock.fileno()}",
            "--workers", "1", "--worker-class", "gthread", "--threads", str(threads),
            # An upload of a large image is one long request: no worker timeout kills it.
            "--timeout", "0", "--graceful-timeout", "5", "--access-logfile", "-",
            "--error-logfile", "-", "--name", f"migrator-real-{name}", "--no-control-socket",
            app,
        ], pass_fds=(sock.fileno(),), stop_signal=signal.SIGINT)

    def _spawn_cinder(self) -> None:
        """cinder-api and cinder-volume; cinder-scheduler comes later (_spawn_scheduler)."""
        self._gunicorn("cinder", "cinder_wsgi:application", threads=8)
        self._spawn("cinder-volume", [str(self.venv / "bin" / "cinder-volume"),
                                      "--config-file", str(self._conf("cinder.conf"))])
        for sock in self._sockets.values():
            # The services own the listening sockets now; ours would keep the ports open
            # (and accept nothing) after they stop.
            sock.close()

    def _wait_reported(self, binary: str, deadline: float) -> None:
        """Until the Cinder service ``binary`` has reported its state once
        (``services.report_count``, every ``report_interval``): it does so only after its RPC
        server started, so from then on it hears what is sent to it."""
        def reported() -> bool | None:
            with psycopg.connect(self._pg_conninfo(self.databases["cinder"]),
                                 autocommit=True) as conn:
                row = conn.execute(
                    'SELECT max(report_count) FROM services WHERE "binary" = %s '
                    "AND NOT deleted", (binary,)).fetchone()
            return True if row and row[0] else None
        self._poll(f"{binary} reporting", deadline, reported)

    def _spawn_scheduler(self, deadline: float) -> None:
        """cinder-scheduler, once cinder-volume listens, and waited for until it listens too.
        cinder-volume tells the schedulers what it has only when one asks (a scheduler asks
        once, as it starts) or every 60 s (its periodic report, whose spacing no option
        changes): a scheduler started before cinder-volume listened schedules nothing for up
        to a minute. And a volume asked for before the scheduler listens is lost (RabbitMQ
        drops a message no queue is bound for): it stays ``creating``."""
        self._wait_reported("cinder-volume", deadline)
        self._spawn("cinder-scheduler", [str(self.venv / "bin" / "cinder-scheduler"),
                                         "--config-file", str(self._conf("cinder.conf"))])
        self._wait_reported("cinder-scheduler", deadline)

    def _check_alive(self) -> None:
        if self._stopped:
            raise ServicesError("the services are being stopped")
        for proc in self.processes:
            code = proc.popen.poll()
            if code is not None:
                raise ServicesError(f"{proc.name} (pid {proc.popen.pid}) exited {code}")

    def _poll(self, what: str, deadline: float, attempt: Callable[[], Any]) -> Any:
        """``attempt()`` until it returns something other than None; between tries every
        process is checked (one that died ends the wait with its log)."""
        last: Exception | None = None
        while True:
            self._check_alive()
            try:
                result = attempt()
            except (requests.RequestException, ServicesError, psycopg.Error) as exc:
                last, result = exc, None
            if result is not None:
                return result
            if time.monotonic() > deadline:
                raise ServicesError(f"{what}: not ready after {self.timeout:.0f} s"
                                    + (f" (last: {last})" if last else ""))
            time.sleep(0.25)

    # -- readiness ---------------------------------------------------------------------------
    def _auth_body(self, password: str | None = None) -> dict[str, Any]:
        return {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"id": "default"},
                "password": password or self.admin_password}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}

    def _wait_for_token(self, deadline: float, password: str | None = None) -> str:
        """An admin token that Keystone also accepts: one issued within the second of a
        revocation (the password change of _take_over) is refused, so a new one is asked."""
        def attempt() -> str | None:
            response = requests.post(f"{self.keystone_url}/v3/auth/tokens",
                                     json=self._auth_body(password), timeout=30)
            if response.status_code != 201:
                return None
            token = str(response.headers["X-Subject-Token"])
            check = requests.get(f"{self.keystone_url}/v3/auth/tokens", timeout=30,
                                 headers={"X-Auth-Token": token, "X-Subject-Token": token})
            if check.status_code != 200:
                return None
            self.admin_project_id = response.json()["token"]["project"]["id"]
            return token
        token: str = self._poll("Keystone token", deadline, attempt)
        return token

    def _keystone(self, token: str, method: str, path: str, body: Mapping[str, Any] | None = None,
                  ok: tuple[int, ...] = (200, 201, 204),
                  headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        response = requests.request(method, f"{self.keystone_url}/v3{path}", json=body,
                                    headers={"X-Auth-Token": token, **(headers or {})},
                                    timeout=30)
        if response.status_code not in ok:
            raise ServicesError(f"Keystone {method} {path}: {response.status_code} "
                                f"{response.text[:300]}")
        return dict(response.json()) if response.content else {}

    def _take_over(self, token: str) -> None:
        """This run's admin password and identity URL in place of the template's."""
        me = self._keystone(token, "GET", "/auth/tokens", headers={"X-Subject-Token": token})
        user_id = me["token"]["user"]["id"]
        for endpoint in self._keystone(token, "GET", "/endpoints")["endpoints"]:
            if endpoint["url"] == PLACEHOLDER_URL:
                self._keystone(token, "PATCH", f"/endpoints/{endpoint['id']}",
                               {"endpoint": {"url": f"{self.keystone_url}/v3"}})
        self._keystone(token, "PATCH", f"/users/{user_id}",
                       {"user": {"password": self.admin_password}})

    def _register_catalog(self, token: str) -> None:
        """The service project and users of Glance and Cinder, and their catalog entries (what
        a deployment tool adds after ``keystone-manage bootstrap``)."""
        roles = {r["name"]: r["id"] for r in self._keystone(token, "GET", "/roles")["roles"]}
        project = self._keystone(token, "POST", "/projects", {"project": {
            "name": "service", "domain_id": "default"}})["project"]["id"]
        for name in ("glance", "cinder"):
            user = self._keystone(token, "POST", "/users", {"user": {
                "name": name, "domain_id": "default", "password": self.service_password,
                "default_project_id": project}})["user"]["id"]
            for role in ("admin", "service"):
                if role in roles:
                    self._keystone(token, "PUT",
                                   f"/projects/{project}/users/{user}/roles/{roles[role]}")
        for kind, name, url in (("image", "glance", self.glance_url),
                                ("volumev3", "cinderv3", f"{self.cinder_url}/v3"),
                                ("block-storage", "cinder", f"{self.cinder_url}/v3")):
            service = self._keystone(token, "POST", "/services", {"service": {
                "type": kind, "name": name, "enabled": True}})["service"]["id"]
            for interface in ("public", "internal", "admin"):
                self._keystone(token, "POST", "/endpoints", {"endpoint": {
                    "service_id": service, "interface": interface, "url": url,
                    "region_id": REGION, "enabled": True}})

    def _wait_for_glance(self, token: str, deadline: float) -> None:
        def attempt() -> bool | None:
            response = requests.get(f"{self.glance_url}/v2/images",
                                    headers={"X-Auth-Token": token}, timeout=30)
            return True if response.status_code == 200 else None
        self._poll("Glance image list", deadline, attempt)

    def _wait_for_volume_service(self, token: str, deadline: float) -> None:
        """A 1 GiB probe volume until one is ``available`` (deleted afterwards, and waited
        for, so that the tests meet an empty Cinder)."""
        base = f"{self.cinder_url}/v3/{self.admin_project_id}"
        headers = {"X-Auth-Token": token}

        def status(volume_id: str) -> str | None:
            response = requests.get(f"{base}/volumes/{volume_id}", headers=headers, timeout=30)
            if response.status_code == 404:
                return None
            response.raise_for_status()
            return str(response.json()["volume"]["status"])

        def delete(volume_id: str) -> None:
            requests.delete(f"{base}/volumes/{volume_id}", headers=headers, timeout=30)
            self._poll("probe volume deleted", deadline,
                       lambda: True if status(volume_id) is None else None)

        def attempt() -> bool | None:
            self.timings.probe_attempts += 1
            name = f"migrator-real-probe-{self.timings.probe_attempts}"
            response = requests.post(f"{base}/volumes", headers=headers, timeout=30,
                                     json={"volume": {"size": 1, "name": name}})
            if response.status_code != 202:
                return None
            volume_id = response.json()["volume"]["id"]
            state = self._poll("probe volume", deadline, lambda: (
                s if (s := status(volume_id)) in ("available", "error") else None))
            delete(volume_id)
            if state == "available":
                return True
            time.sleep(1)  # no volume service known to the scheduler yet
            return None

        self._poll("a volume scheduled and created", deadline, attempt)

    # -- stop --------------------------------------------------------------------------------
    def stop(self, grace: float = 10.0) -> None:
        """Every process stopped by its id (SIGTERM to its group, then SIGKILL), the
        databases dropped, the virtual host deleted. Safe to call twice."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._background.shutdown(wait=True)  # its waits end: every process is checked
        began = time.monotonic()
        errors: list[str] = []
        for sock in self._sockets.values():
            sock.close()
        for proc in reversed(self.processes):
            if proc.popen.poll() is None:
                try:
                    os.killpg(proc.popen.pid, proc.stop_signal)
                except ProcessLookupError:
                    continue
        end = time.monotonic() + grace
        for proc in reversed(self.processes):
            try:
                proc.popen.wait(max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                errors.append(f"{proc.name} ignored {proc.stop_signal.name} for {grace:.0f} s: "
                              "killed")
            # The group too: a gunicorn worker outliving its master still holds the port.
            with suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            jobs = [pool.submit(self._drop_databases), pool.submit(self._delete_vhost)]
            for job in jobs:
                try:
                    job.result()
                except (psycopg.Error, ServicesError, subprocess.SubprocessError) as exc:
                    errors.append(str(exc))
        self.timings.stopped = time.monotonic() - began
        if errors:
            raise ServicesError("; ".join(errors))

    def _delete_vhost(self) -> None:
        if self.vhost:
            self._rabbitmqctl("delete_vhost", self.vhost)
            self.vhost = None

    # -- reports -----------------------------------------------------------------------------
    def report(self, lines: int = 25) -> str:
        """The end of every log (what a failure message shows), and where the logs are."""
        parts = [f"logs in {self.logs}"]
        if self.logs.is_dir():
            for log in sorted(self.logs.glob("*.log")):
                parts.append(f"--- {log.name} (last {lines} lines)\n{tail(log, lines)}")
        return "\n".join(parts)

    def write_clouds_yaml(self, path: Path, name: str = "target",
                          others: Mapping[str, Any] | None = None) -> Path:
        clouds = {**(others or {}), name: self.cloud_entry()}
        path.write_text(yaml.safe_dump({"clouds": clouds}, sort_keys=False))
        path.chmod(0o600)
        return path


@contextmanager
def running(root: Path, venv: Path, **options: Any) -> Iterator[RealServices]:
    services = RealServices(root, venv, **options).start()
    try:
        yield services
    finally:
        services.stop()
