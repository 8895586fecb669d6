"""The validated rules, cached for the hook's fast path: ``STATE_DIR/rules.json``.

The full command validates the configuration (pydantic, :mod:`cfban.config`) and then writes
the :class:`~cfban.rules.Rules` it yields, together with a *fingerprint* of what it
read: the configuration file's path and bytes and every environment variable the
configuration reads, and the state of the token file it names (readable, changed). The fast
path computes the same fingerprint (standard library only)
and uses the snapshot only when it matches; anything else — no snapshot yet, an edited file,
another environment, a file it cannot read — hands the call to the full command, which
validates afresh and rejects a bad configuration with the same message and exit 78 as every
other command.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cfban.paths import DEFAULT_CONFIG_PATH, default_state_dir
from cfban.rules import Rules

SNAPSHOT_FILE = "rules.json"
#: Every environment variable the configuration reads (see :mod:`cfban.config`).
ENV_KEYS = (
    "CLOUDFLARE_API_TOKEN",
    "CFBAN_API_TOKEN_FILE",
    "CFBAN_API_URL",
    "CFBAN_ACCOUNT_ID",
    "CFBAN_ZONE_ID",
    "CFBAN_BACKEND",
    "CFBAN_STATE_DIR",
    "CFBAN_ALLOW_TEST_NETS",
)


def config_file(path: Path | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """The configuration file to read and whether it was named (not the default)."""
    if path is not None:
        return path, True
    if env.get("CFBAN_CONFIG"):
        return Path(env["CFBAN_CONFIG"]), True
    return DEFAULT_CONFIG_PATH, False


def _inputs(path: Path | None, env: Mapping[str, str]) -> tuple[str, Path | None] | None:
    """The fingerprint of what the configuration is read from, and where the state is as
    the configuration will say (None: not simply told); None when the file cannot be read
    as TOML (the full command says why)."""
    file, explicit = config_file(path, env)
    try:
        data = file.read_bytes()
        table = tomllib.loads(data.decode("utf-8")) if data else {}
    except FileNotFoundError:
        if explicit:
            return None
        data, table = b"", {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    digest = hashlib.sha256()
    digest.update(str(file.absolute()).encode() + b"\0" + data + b"\0")
    for key in ENV_KEYS:
        digest.update(f"{key}={env.get(key, '')}\0".encode())
    # a token file that became unreadable or empty changes what the full command says
    digest.update(_token_file_state(file, table, env).encode())
    return digest.hexdigest(), _state_dir(file, table, env)


def _relative(file: Path, value: str) -> Path:
    """A path written in the configuration file: relative to the file."""
    return Path(value) if Path(value).is_absolute() else file.parent.resolve() / value


def _token_file_state(file: Path, table: dict[str, Any], env: Mapping[str, str]) -> str:
    cloudflare = table.get("cloudflare")
    written = cloudflare.get("api_token_file") if isinstance(cloudflare, dict) else None
    if env.get("CFBAN_API_TOKEN_FILE"):
        token_file = Path(env["CFBAN_API_TOKEN_FILE"])
    elif isinstance(written, str) and written:
        token_file = _relative(file, written)
    else:
        return "no token file"
    try:
        found = token_file.stat()
    except OSError as exc:
        return f"token file: {exc.errno}"
    return f"token file: {found.st_mtime_ns} {found.st_size} {os.access(token_file, os.R_OK)}"


def _state_dir(file: Path, table: dict[str, Any], env: Mapping[str, str]) -> Path | None:
    if env.get("CFBAN_STATE_DIR"):
        return Path(env["CFBAN_STATE_DIR"])
    value = table.get("state_dir")
    if value is None:
        return default_state_dir()
    if not isinstance(value, str) or not value:
        return None
    return _relative(file, value)


def load(path: Path | None, env: Mapping[str, str]) -> Rules | None:
    """The cached rules when they were validated from exactly these inputs, else None."""
    found = _inputs(path, env)
    if found is None:
        return None
    fingerprint, state_dir = found
    if state_dir is None:
        return None
    try:
        stored = json.loads((state_dir / SNAPSHOT_FILE).read_text(encoding="utf-8"))
        if stored.get("fingerprint") != fingerprint:
            return None
        rules = Rules.from_json(stored["rules"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return rules if rules.state_dir == state_dir else None


def save(rules: Rules, path: Path | None, env: Mapping[str, str]) -> bool:
    """Write the snapshot of ``rules`` validated from these inputs; False when it could not
    be (the fast path then keeps handing over to the full command)."""
    found = _inputs(path, env)
    if found is None:
        return False
    document = json.dumps({"fingerprint": found[0], "rules": rules.to_json()}, sort_keys=True)
    target = rules.state_dir / SNAPSHOT_FILE
    try:
        if target.read_text(encoding="utf-8") == document:
            return True
    except OSError:
        pass
    tmp = target.with_name(f".{SNAPSHOT_FILE}.{os.getpid()}.tmp")
    try:
        rules.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(document)
        os.replace(tmp, target)
    except OSError:
        return False
    return True
