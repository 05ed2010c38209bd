"""The password file: one appended entry per user, mode 0600, readable by yaml.safe_load and by
people, one password per user whatever the threads, processes and retries."""

from __future__ import annotations

import logging
import multiprocessing
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from migrator.clouds.target import TargetCloud
from migrator.engine.runs import StepSpec, find_run
from migrator.engine.steps import fire
from migrator.errors import ConfigError
from migrator.handlers import passwords
from migrator.handlers.passwords import HEADER, random_password, read_password_file
from migrator.sim.server import SimServer
from tests.handlers.helpers import Runner, hexid, step
from tests.sim.conftest import Admin


@pytest.fixture
def pw_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "passwords.yaml"


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that lets everything through: the file's mode must not depend on it."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def entry_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]


def test_one_line_per_user_under_a_header(pw_file: Path, open_umask: None) -> None:
    got = {f"user{i}": random_password(pw_file, f"user{i}") for i in range(5)}
    got["bob@ldap"] = random_password(pw_file, "bob@ldap")
    text = pw_file.read_text()
    assert text.startswith(HEADER)
    assert yaml.safe_load(text) == got
    assert entry_lines(pw_file) == [f"{key}: {value}" for key, value in got.items()]
    assert len(set(got.values())) == len(got) and all(len(v) == 24 for v in got.values())
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600


def test_a_recorded_user_gets_the_same_password_and_no_second_entry(pw_file: Path) -> None:
    first = random_password(pw_file, "alice")
    random_password(pw_file, "bob")
    assert random_password(pw_file, "alice") == first
    passwords._forget_after_fork()  # as a new process would: read from the file
    assert random_password(pw_file, "alice") == first
    assert [line.split(":")[0] for line in entry_lines(pw_file)] == ["alice", "bob"]


@pytest.mark.parametrize("name", ["yes", "123", "null", "a b: c", "#x", "- y", "ünï@dom",
                                  "x" * 200, "line\nbreak", "quote'\"", "\u2028sep"])
def test_names_yaml_would_misread_round_trip(pw_file: Path, name: str) -> None:
    before = random_password(pw_file, "before")
    mine = random_password(pw_file, name)
    after = random_password(pw_file, "after")
    assert yaml.safe_load(pw_file.read_text()) == {"before": before, name: mine,
                                                   "after": after}
    passwords._forget_after_fork()
    assert random_password(pw_file, name) == mine
    assert read_password_file(pw_file)[name] == mine


def test_a_wider_existing_file_is_narrowed_before_a_password_goes_in(pw_file: Path) -> None:
    pw_file.parent.mkdir(parents=True)
    pw_file.write_text("")
    pw_file.chmod(0o644)
    random_password(pw_file, "alice")
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600


def test_a_file_of_the_previous_format_is_read_and_appended_to(pw_file: Path) -> None:
    # What migrator wrote before: the header and the whole mapping, sorted, rewritten each time.
    pw_file.parent.mkdir(parents=True)
    pw_file.write_text("# Initial passwords...\n" + yaml.safe_dump({"a": "pw-a", "c": "pw-c"}))
    assert random_password(pw_file, "c") == "pw-c"
    new = random_password(pw_file, "b")
    assert yaml.safe_load(pw_file.read_text()) == {"a": "pw-a", "c": "pw-c", "b": new}


def test_a_hand_edited_file_is_read_again(pw_file: Path) -> None:
    alice = random_password(pw_file, "alice")
    random_password(pw_file, "bob")
    # The operator handed bob's password over and removed it; no final newline left.
    pw_file.write_text(f"{HEADER}alice: {alice}")
    assert random_password(pw_file, "alice") == alice
    carol = random_password(pw_file, "carol")
    assert yaml.safe_load(pw_file.read_text()) == {"alice": alice, "carol": carol}


def test_entries_appended_by_another_process_are_seen(pw_file: Path) -> None:
    mine = random_password(pw_file, "alice")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        theirs = pool.apply(random_password, (pw_file, "bob"))
        assert pool.apply(random_password, (pw_file, "alice")) == mine
    assert random_password(pw_file, "bob") == theirs
    assert len(entry_lines(pw_file)) == 2


def _append_many(path: Path, worker: int, users: int, shared: list[str]) -> dict[str, str]:
    """In a worker process: 4 threads, each its own users plus every shared one."""
    got: dict[str, str] = {}
    lock = threading.Lock()

    def thread(t: int) -> None:
        for i in range(users):
            keys = [f"w{worker}-t{t}-u{i}"] + ([shared[i]] if i < len(shared) else [])
            for key in keys:
                value = random_password(path, key)
                with lock:
                    assert got.setdefault(key, value) == value
    threads = [threading.Thread(target=thread, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got


def test_processes_and_threads_append_at_once(pw_file: Path) -> None:
    shared = [f"shared{i}" for i in range(20)]  # every thread of every process asks for these
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_append_many, [(pw_file, w, 25, shared) for w in range(4)])
    recorded = yaml.safe_load(pw_file.read_text())
    lines = entry_lines(pw_file)
    assert len(lines) == len(recorded) == 4 * 4 * 25 + len(shared)  # each user once
    for got in results:
        for key, value in got.items():
            assert recorded[key] == value  # every process saw the one recorded password
    assert pw_file.read_text().count(HEADER) == 1
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600


def test_a_broken_file_is_named_without_its_content(pw_file: Path) -> None:
    pw_file.parent.mkdir(parents=True)
    pw_file.write_text("alice: Secret-Alice-1\nbob: [Secret-Bob-2\n")
    with pytest.raises(ConfigError) as err:
        random_password(pw_file, "carol")
    assert str(pw_file) in err.value.message and "line" in err.value.message
    assert "Secret" not in err.value.message and "Secret" not in repr(err.value.__context__)
    pw_file.write_text("- Secret-List\n")
    with pytest.raises(ConfigError, match="not a mapping"):
        random_password(pw_file, "carol")


def test_a_broken_entry_appended_later_is_named_by_its_line(pw_file: Path) -> None:
    random_password(pw_file, "alice")
    with pw_file.open("a") as out:
        out.write("bob: Secret-Bob: x\n")
    with pytest.raises(ConfigError, match=r"not valid YAML \(line 5\)") as err:
        random_password(pw_file, "carol")
    assert "Secret" not in err.value.message


def test_a_symbolic_link_is_refused(pw_file: Path, tmp_path: Path) -> None:
    pw_file.parent.mkdir(parents=True)
    pw_file.symlink_to(tmp_path / "elsewhere.yaml")
    with pytest.raises(ConfigError, match="symbolic link"):
        random_password(pw_file, "alice")
    assert not (tmp_path / "elsewhere.yaml").exists()


# -- through the user handler, against the simulator ----------------------------------------
def _user_step(pw_file: Path) -> tuple[StepSpec, str]:
    uid, name = hexid(), f"pw-{hexid()[:8]}"
    spec = step("user", uid, {"name": name, "domain_id": "default", "enabled": True,
                              "email": f"{name}@example.org"}, {},
                {"password_policy": "random", "password_file": str(pw_file)}, name=name)
    return spec, name


def _logs_in(sim: SimServer, name: str, password: str) -> bool:
    """An unscoped password token from the target's Keystone."""
    body: dict[str, Any] = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": name, "domain": {"id": "default"}, "password": password}}}}}
    resp = requests.post(f"{sim.cloud('target').base_url}/identity/v3/auth/tokens",
                         json=body, timeout=30)
    assert resp.status_code in (201, 401), resp.text
    return resp.status_code == 201


def _database_bytes(db_url: str) -> bytes:
    path = Path(db_url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def _users_named(tc: TargetCloud, name: str) -> list[dict[str, Any]]:
    return tc.users_named(name, "default")


def test_user_created_before_the_checkpoint_keeps_its_recorded_password(
        runner: Runner, tc: TargetCloud, sim: SimServer, pw_file: Path) -> None:
    spec, name = _user_step(pw_file)
    run = runner.create([spec], [])
    # The step "crashed" after recording the password and creating the user, before its
    # checkpoint: the user exists with the recorded password.
    password = random_password(pw_file, name)
    tc.create_user(str(spec.source_id), spec.spec["attrs"], password=password)
    steps = runner.steps(find_run(runner.factory, run).id)
    fire(runner.factory, steps[spec.key].id, "start")
    result = runner.execute(run, resume=True)
    assert result.status == "finished", result.failed_steps
    assert runner.steps(result.run_id)[spec.key].checkpoint["adopted"] == "in-doubt"
    assert len(_users_named(tc, name)) == 1
    assert read_password_file(pw_file) == {name: password}  # recorded once, unchanged
    assert _logs_in(sim, name, password)
    assert not _logs_in(sim, name, password + "x")


def test_user_not_created_before_the_crash_is_created_with_the_recorded_password(
        runner: Runner, tc: TargetCloud, sim: SimServer, pw_file: Path) -> None:
    spec, name = _user_step(pw_file)
    run = runner.create([spec], [])
    password = random_password(pw_file, name)  # recorded, then the process died
    passwords._forget_after_fork()  # the resuming process knows only the file
    steps = runner.steps(find_run(runner.factory, run).id)
    fire(runner.factory, steps[spec.key].id, "start")
    result = runner.execute(run, resume=True)
    assert result.status == "finished", result.failed_steps
    assert not runner.steps(result.run_id)[spec.key].checkpoint.get("adopted")
    assert read_password_file(pw_file) == {name: password}
    assert _logs_in(sim, name, password)


def test_passwords_reach_no_log_database_or_error(
        runner: Runner, tc: TargetCloud, sim: SimServer, admin_api: dict[str, Admin],
        pw_file: Path, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, keystoneauth's and openstacksdk's too
    ok, ok_name = _user_step(pw_file)
    bad, bad_name = _user_step(pw_file)
    # ok: its first create answers 500 (retried); bad: every create is refused.
    admin_api["target"].add_fault(match="POST /identity/v3/users", times=1, status=500)
    first = runner.run([ok], [])
    assert first.status == "finished", first.failed_steps
    admin_api["target"].add_fault(match="POST /identity/v3/users", status=400)
    second = runner.run([bad], [])
    assert second.status == "failed"
    error = runner.steps(second.run_id)[bad.key].last_error or ""
    assert bad_name in error  # the error is about this user...
    recorded = read_password_file(pw_file)
    assert _logs_in(sim, ok_name, recorded[ok_name])
    assert set(recorded) == {ok_name, bad_name}
    stored = _database_bytes(db_url)
    for secret in recorded.values():
        assert secret not in error  # ...without its password
        assert secret not in caplog.text
        assert secret.encode() not in stored
        for run_id in (first.run_id, second.run_id):
            assert all(secret not in repr(e.detail) for e in runner.events(run_id))
