"""``cfban check``: the configuration, the state, nginx's real-IP set-up in each log, and the
backend's token, permissions and resources, each as one :class:`Check`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cfban.errors import CfbanError

if TYPE_CHECKING:
    from cfban.cloudflare import Backend
    from cfban.config import Settings
    from cfban.state import StateStore


@dataclass(frozen=True)
class Check:
    """One line of ``cfban check``."""

    name: str
    ok: bool
    detail: str


def run_checks(
    settings: Settings, store: Callable[[], StateStore], backend: Callable[[], Backend]
) -> list[Check]:
    """Checks of the configuration, the state (``store`` opens it), the logs and the backend
    (``backend`` builds it), in that order."""
    checks = [Check("configuration", True, f"read from {settings.source}")]
    warning = settings.token_file_warning()
    if warning is not None:
        checks.append(Check("token file", False, warning))
    try:
        depth = store().depth()
    except CfbanError as exc:
        checks.append(Check("state", False, str(exc)))
    else:
        queued = f"{depth['add']} adds, {depth['remove']} removes queued"
        checks.append(Check("state", True, f"{store().path} ({queued})"))
    checks.extend(_log_checks(settings))
    from cfban.origin import origin_checks  # is the origin reachable around Cloudflare?

    checks.extend(origin_checks(settings))
    try:
        checks.extend(Check(*item) for item in backend().check())
    except CfbanError as exc:
        checks.append(Check("cloudflare", False, str(exc)))
    from cfban.cloudflare import cloudflare_checks, cloudflare_status  # problem, fill, budget

    figures = cloudflare_status(settings, settings.resolved_state_dir)
    checks.extend(Check(*item) for item in cloudflare_checks(figures))
    return checks


def _log_checks(settings: Settings) -> list[Check]:
    """nginx real-IP sanity, from the last lines of every configured log."""
    from cfban.realip import NetworkSet, load_ranges
    from cfban.realip._logcheck import inspect_log
    from cfban.tailer import expand_logpaths

    ranges = load_ranges(settings)
    trusted = NetworkSet([*ranges.networks.networks, *settings.realip.trusted_proxies])
    patterns = [p for jail in settings.jails.values() if jail.enabled for p in jail.logpath]
    checks: list[Check] = []
    for path in expand_logpaths(patterns):
        findings = inspect_log(path, ranges.networks, trusted)
        problems = findings.problems()
        detail = "; ".join(problems) or f"last {findings.lines} lines name real clients"
        checks.append(Check(f"log {path}", not problems, detail))
    return checks
