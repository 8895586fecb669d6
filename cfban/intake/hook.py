"""The fast path of ``cfban ban|unban IP ... --background``: the fail2ban hook.

fail2ban runs a jail's actions one after another and waits for each, so the hook must be
quick. This path imports neither typer, pydantic nor httpx: it takes the validated rules
from the snapshot the full command wrote (:mod:`cfban.intake.snapshot`), commits the ban or
unban through the same :class:`~cfban.intake.commit.Intake` as every other way in, makes
sure a background ``cfban deliver --linger`` runs to send it — one deliverer drains a whole
burst of bans in batches — and returns. When delivery is failing it says so on stderr.

Anything it does not recognise (other options, a ``--bantime`` it cannot read, a
configuration without a matching snapshot) is left to the full command, which validates it
and gives the proper error.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from cfban.durations import parse_duration
from cfban.errors import CfbanError
from cfban.intake import snapshot
from cfban.intake.lock import deliverer_lock
from cfban.rules import Rules

#: Seconds a background deliverer waits for more work before it exits.
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


def ensure_deliverer(state_dir: Path, config: Path | None) -> bool:
    """Start ``cfban deliver --linger`` unless one runs; return whether one was started.

    A running deliverer holds the deliverer lock and checks the queue once more after letting
    it go, so what was committed before this check is never left behind. The deliverer
    writes its own log (``STATE_DIR/deliverer.log``), so its output is not needed here.
    """
    if deliverer_lock(state_dir).held_elsewhere():
        return False
    command = [sys.executable, "-m", "cfban"]
    if config is not None:
        command += ["--config", str(config)]
    quiet = [
        (os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)
    ]  # its own log is in the state dir; fail2ban must not wait on its output
    # posix_spawn, not subprocess: nothing to wait for or reap here, and a quicker import
    os.posix_spawn(
        sys.executable,
        [*command, "deliver", "--linger", str(LINGER)],
        os.environ,
        file_actions=quiet,
        setsid=True,
    )
    return True


def commit_and_hand_over(
    command: str,
    ip: str,
    jail: str | None,
    bantime: int | None,
    rules: Rules,
    config: Path | None,
    out: TextIO,
    err: TextIO,
) -> None:
    """Commit a background ban or unban, start a deliverer, say what happened on ``out``
    and, when delivery is failing, warn on ``err``. The fast path and the full command's
    ``--background`` both end here.

    Raises:
        CfbanError: the address is refused or the state cannot be written.
    """
    from cfban.clock import SystemClock
    from cfban.intake.alarm import delivery_warning
    from cfban.intake.commit import Intake, queued_ban_message, queued_unban_message
    from cfban.state import StateStore

    clock = SystemClock()
    with StateStore.open(rules.state_dir, clock) as store:
        intake = Intake(rules, store)
        if command == "ban":
            done = intake.ban(ip, jail, bantime, network=jail is None)
            message = queued_ban_message(done, dry_run=rules.dry_run)
        else:
            message = queued_unban_message(intake.unban(ip, jail), dry_run=rules.dry_run)
        warning = delivery_warning(store.delivery_record(), store.oldest_queued_at(), clock.now())
    ensure_deliverer(rules.state_dir, config)
    print(message, file=out)  # noqa: T201
    if warning is not None:
        print(f"cfban: warning: {warning}", file=err)  # noqa: T201


def fast_path(argv: list[str]) -> int | None:
    """Run ``argv`` on the fast path, or return ``None`` for the full command."""
    request = parse(argv)
    if request is None:
        return None
    rules = snapshot.load(request.config, os.environ)
    if rules is None:
        return None
    try:
        bantime = parse_duration(request.bantime) if request.bantime is not None else None
    except ValueError:
        return None  # the full command reports it, as for any other bad option
    try:
        commit_and_hand_over(
            request.command, request.ip, request.jail, bantime, rules, request.config,
            sys.stdout, sys.stderr,
        )  # fmt: skip
    except CfbanError as exc:
        print(f"cfban: error: {exc}", file=sys.stderr)  # noqa: T201
        return exc.exit_code
    return 0
