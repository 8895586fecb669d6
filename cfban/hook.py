"""The fast path of ``cfban ban|unban IP ... --background``: the fail2ban hook.

fail2ban runs a jail's actions one after another and waits for each, so the hook must be
quick. This path uses the standard library only (no typer, pydantic or httpx): it reads the
few settings it needs straight from the TOML file, checks the address against the never-ban
rules, commits the ban (or unban) to the state's outbox, makes sure a background
``cfban deliver --linger`` is running to send it — one deliverer drains a whole burst of bans
in batches — and returns. Anything it does not recognise (other options, a configuration it
cannot read) is left to the full command, which gives the proper error.
"""

from __future__ import annotations

import os
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfban.deliverlock import DelivererLock
from cfban.durations import DEFAULT_BANTIME, parse_duration
from cfban.errors import CfbanError
from cfban.paths import DEFAULT_CONFIG_PATH, default_state_dir

LINGER = 5.0


@dataclass(frozen=True)
class HookRequest:
    """A parsed ``cfban [--config P] ban|unban IP [--jail J] [--bantime S] --background``."""

    command: str
    ip: str
    jail: str | None
    bantime: str | None
    config: Path | None


def parse(argv: list[str]) -> HookRequest | None:
    """The request, or ``None`` when ``argv`` is not exactly a background ban/unban."""
    config: Path | None = None
    args = list(argv)
    while args and args[0].startswith("-"):
        if args[0] in ("--config", "-c") and len(args) > 1:
            config, args = Path(args[1]), args[2:]
        elif args[0].startswith("--config="):
            config, args = Path(args[0].split("=", 1)[1]), args[1:]
        else:
            return None
    if not args or args[0] not in ("ban", "unban"):
        return None
    command, rest = args[0], args[1:]
    values: dict[str, str] = {}
    positional: list[str] = []
    background = False
    allowed = {"--jail": "jail", "-j": "jail"}
    if command == "ban":
        allowed.update({"--bantime": "bantime", "-t": "bantime"})
    i = 0
    while i < len(rest):
        item = rest[i]
        if item == "--background":
            background = True
        elif item in allowed and i + 1 < len(rest):
            values[allowed[item]] = rest[i + 1]
            i += 1
        elif "=" in item and item.split("=", 1)[0] in allowed:
            key, value = item.split("=", 1)
            values[allowed[key]] = value
        elif item.startswith("-") and not _negative_number(item):
            return None
        else:
            positional.append(item)
        i += 1
    if not background or len(positional) != 1:
        return None
    return HookRequest(command, positional[0], values.get("jail"), values.get("bantime"), config)


def _negative_number(text: str) -> bool:
    return text[1:].isdigit()


@dataclass(frozen=True)
class HookSettings:
    """The settings the hook needs, read without the full configuration machinery."""

    state_dir: Path
    ipv6_prefix: int
    ignoreip: tuple[str, ...]
    jail_ignoreip: tuple[str, ...]
    allow_test_nets: bool
    bantime: int
    dry_run: bool


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise TypeError(key)
    return value


def load_hook_settings(request: HookRequest, env: dict[str, str]) -> HookSettings | None:
    """The hook's settings, or ``None`` to let the full command read (and judge) the file."""
    path = request.config or (Path(env["CFBAN_CONFIG"]) if env.get("CFBAN_CONFIG") else None)
    explicit = path is not None
    path = path or DEFAULT_CONFIG_PATH
    data: dict[str, Any] = {}
    try:
        if explicit or path.exists():
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        cloudflare, realip, jails = (_table(data, k) for k in ("cloudflare", "realip", "jails"))
        jail = _table(jails, request.jail) if request.jail else {}
        state_dir = env.get("CFBAN_STATE_DIR") or (
            str(path.parent.resolve() / data["state_dir"]) if data.get("state_dir") else None
        )  # a path in the file is relative to the file (an absolute one stays as it is)
        allow = env.get("CFBAN_ALLOW_TEST_NETS") or realip.get("allow_test_nets", False)
        token = (
            env.get("CLOUDFLARE_API_TOKEN")
            or env.get("CFBAN_API_TOKEN_FILE")
            or cloudflare.get("api_token")
            or cloudflare.get("api_token_file")
        )
        return HookSettings(
            state_dir=Path(state_dir) if state_dir else default_state_dir(),
            ipv6_prefix=int(cloudflare.get("ipv6_prefix", 64)),
            ignoreip=tuple(str(x) for x in data.get("ignoreip", [])),
            jail_ignoreip=tuple(str(x) for x in jail.get("ignoreip", [])),
            allow_test_nets=str(allow).lower() in ("1", "true", "yes"),
            bantime=parse_duration(jail.get("bantime", DEFAULT_BANTIME)),
            dry_run=not token,
        )
    except (OSError, ValueError, TypeError, tomllib.TOMLDecodeError):
        return None


def ensure_deliverer(state_dir: Path, config: Path | None) -> bool:
    """Start ``cfban deliver --linger`` unless one runs; return whether one was started.

    A running deliverer holds ``spool/.deliverer.lock`` and checks the queue once more after
    letting it go, so what was committed before this check is never left behind.
    """
    if DelivererLock(state_dir).held_elsewhere():
        return False
    import subprocess  # only when a deliverer has to be started: most calls find one running

    command = [sys.executable, "-m", "cfban"]
    if config is not None:
        command += ["--config", str(config)]
    subprocess.Popen(
        [*command, "deliver", "--linger", str(LINGER)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    return True


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "permanent"
    return time.strftime("until %Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def run(request: HookRequest, settings: HookSettings, out: Any = sys.stdout) -> int:
    """Guard, commit, hand over to the background deliverer; return the exit code.

    Raises:
        CfbanError: the address is refused or the state cannot be written.
    """
    from cfban.clock import SystemClock
    from cfban.realip._guards import BanGuard
    from cfban.realip._ranges import load_ranges_at
    from cfban.state import StateStore
    from cfban.targets import ban_target

    clock = SystemClock()
    name = request.jail or "manual"
    if request.command == "ban":
        target = ban_target(request.ip, settings.ipv6_prefix)
        guard = BanGuard(
            load_ranges_at(settings.state_dir),
            ignoreip=settings.ignoreip,
            jail_ignoreip=settings.jail_ignoreip,
            jail=request.jail,
            allow_test_nets=settings.allow_test_nets,
            ipv6_prefix=settings.ipv6_prefix,
        )
        guard.check(target.address)
        try:
            seconds = (
                parse_duration(request.bantime) if request.bantime is not None else settings.bantime
            )
        except ValueError as exc:
            raise CfbanError(f"--bantime: {exc}") from None
        expires = None if seconds < 0 else clock.now() + seconds
        with StateStore.open(settings.state_dir, clock) as store:
            store.hold(address=target.address, target=target.target, jail=name, expires_at=expires)
        subject = target.address if target.target == target.address else target.target
        message = f"banned {subject} (jail {name}, {_when(expires)}): queued"
    else:
        from cfban.bans import unban_target

        text = unban_target(request.ip, settings.ipv6_prefix)
        with StateStore.open(settings.state_dir, clock) as store:
            store.release(text, request.jail)
        message = f"unbanned {text} (jail {name}): queued"
    ensure_deliverer(settings.state_dir, request.config)
    suffix = " (dry run)" if settings.dry_run else ""
    print(f"{message}; a background cfban delivers it{suffix}", file=out)  # noqa: T201
    return 0


def fast_path(argv: list[str]) -> int | None:
    """Run ``argv`` on the fast path, or return ``None`` for the full command."""
    request = parse(argv)
    if request is None:
        return None
    settings = load_hook_settings(request, dict(os.environ))
    if settings is None:
        return None
    try:
        return run(request, settings)
    except CfbanError as exc:
        print(f"cfban: error: {exc}", file=sys.stderr)  # noqa: T201
        return exc.exit_code
