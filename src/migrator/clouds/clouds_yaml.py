"""clouds.yaml checked before openstacksdk reads it.

openstacksdk (openstack/config/loader.py, ``_load_yaml_json_file``) takes the first file of
its search list that exists, reads it whole with ``yaml.safe_load`` (``json.load`` for
``.json``), and on a YAML or decoding error logs a warning and goes on to the next file: a
broken clouds.yaml then surfaces as "no cloud named ...", binary bytes the same way, and an
alias bomb or a self-referencing alias is walked by its key normalisation (memory, or a
RecursionError). So the file the SDK would take is read here first, with the same choice
rules (``OS_CLIENT_CONFIG_FILE`` first, then the usual places; a file it cannot open for lack
of permission is skipped as the SDK skips it), in bounded time and memory
(migrator.bounded_yaml), and what is wrong is a ConfigError naming the file and the line.
The secure.yaml and clouds-public.yaml files it merges in are checked the same way.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from openstack.config import loader

from migrator.bounded_yaml import (
    MAX_CONFIG_BYTES,
    YamlProblem,
    check_yaml,
    decode_text,
    read_bytes,
    yaml_problem,
)
from migrator.errors import ConfigError

__all__ = ["check_clouds_files", "sdk_search_lists"]


def sdk_search_lists(config_file: str | Path | None) -> list[list[str]]:
    """The lists of files openstacksdk chooses from (clouds, secure, vendor), in its order:
    only ``config_file`` when given (connection.py opens the SDK that way), else its own
    search paths after ``$OS_CLIENT_CONFIG_FILE`` / ``$OS_CLIENT_SECURE_FILE``."""
    if config_file is not None:
        return [[str(config_file)], list(loader.VENDOR_FILES)]
    clouds, secure = list(loader.CONFIG_FILES), list(loader.SECURE_FILES)
    if os.environ.get("OS_CLIENT_CONFIG_FILE"):
        clouds.insert(0, os.environ["OS_CLIENT_CONFIG_FILE"])
    if os.environ.get("OS_CLIENT_SECURE_FILE"):
        secure.insert(0, os.environ["OS_CLIENT_SECURE_FILE"])
    return [clouds, secure, list(loader.VENDOR_FILES)]


def check_clouds_files(config_file: str | Path | None) -> None:
    """ConfigError unless every file openstacksdk would read is a readable mapping (see the
    module docstring)."""
    for candidates in sdk_search_lists(config_file):
        chosen = _first_readable(candidates)
        if chosen is not None:
            _check(Path(chosen[0]), chosen[1])


def _first_readable(paths: Sequence[str]) -> tuple[str, bytes] | None:
    for path in paths:
        if not os.path.exists(path):
            continue
        try:
            return path, read_bytes(Path(path), MAX_CONFIG_BYTES)
        except PermissionError:
            continue  # openstacksdk skips it too
        except OSError as exc:
            if exc.errno == errno.EACCES:
                continue
            raise ConfigError(f"{path}: cannot read the clouds file: {exc.strerror}") from exc
        except YamlProblem as exc:
            raise ConfigError(exc.at(path)) from None
    return None


def _check(path: Path, data: bytes) -> None:
    try:
        text = decode_text(data)
        content: Any
        if path.name.endswith("json"):
            try:
                content = json.loads(text)
            except json.JSONDecodeError as exc:
                raise YamlProblem(f"not valid JSON: {exc.msg}", exc.lineno) from None
            except RecursionError:
                raise YamlProblem("not valid JSON: nested too deep") from None
        else:
            check_yaml(data)
            content = yaml.safe_load(text)
    except YamlProblem as exc:
        raise ConfigError(exc.at(path)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_problem(exc, data).at(path)) from None
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: not a clouds file (expected a mapping such as 'clouds: "
                          f"{{NAME: {{auth: ...}}}}', got {type(content).__name__})")
    clouds = content.get("clouds")
    if clouds is not None and not isinstance(clouds, dict):
        raise ConfigError(f"{path}: clouds: expected a mapping of cloud name to its settings, "
                          f"got {type(clouds).__name__}")
