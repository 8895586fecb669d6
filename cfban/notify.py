"""The ``[notify]`` webhook: one JSON POST when a condition starts and one when it ends.

Conditions are ``stalled`` (delivery fails for a persistent reason: token, permission, a
deleted list or rule) and ``list_fill`` (the IP list passed 90 % of its capacity, or is
full). Each sends one POST when it starts (``"event": "stalled"`` / ``"list_fill"``) and one
when it ends (``"event": "recovered"``), never one per retry: which conditions are active is
kept in ``STATE_DIR/notify-state.json`` (under an ``flock``), so the daemon, the hook's
deliverer and people's commands on one host share it.

Sending never blocks delivery: the POST runs on a background thread, retried with a growing
pause (1, 2, 4, … s) on network errors, 5xx and 429, for ``attempts`` tries; a short-lived
process waits for a pending POST at exit for at most :data:`EXIT_WAIT` seconds. The webhook
URL may carry a secret (chat webhooks do), so it appears in no log line.

Body::

    {"source": "cfban", "host": "web1", "event": "stalled", "condition": "stalled",
     "at": 1767225600.0, "kind": "token_invalid", "message": "...", "fix": "...", ...}
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cfban.config import NotifySettings

log = logging.getLogger(__name__)

STATE_FILE = "notify-state.json"
EXIT_WAIT = 10.0
_lock = threading.Lock()
_webhooks: dict[Path, NotifySettings] = {}
_threads: list[threading.Thread] = []


def configure(state_dir: Path, settings: NotifySettings) -> None:
    """Send this state directory's notifications to ``settings.webhook_url`` (if set)."""
    with _lock:
        if settings.webhook_url:
            _webhooks[state_dir] = settings
        else:
            _webhooks.pop(state_dir, None)


def start(state_dir: Path, condition: str, now: float, details: dict[str, Any]) -> bool:
    """``condition`` holds: POST once if it was not already active; return whether it was
    new."""
    with _state(state_dir) as active:
        if condition in active:
            return False
        active[condition] = now
    _post(state_dir, {"event": condition, "condition": condition, "at": now, **details})
    return True


def end(state_dir: Path, condition: str, now: float, details: dict[str, Any]) -> bool:
    """``condition`` is over: POST ``recovered`` once if it was active; return whether it was."""
    with _state(state_dir) as active:
        since = active.pop(condition, None)
    if since is None:
        return False
    body = {"event": "recovered", "condition": condition, "at": now, "since": since, **details}
    _post(state_dir, body)
    return True


def active(state_dir: Path) -> dict[str, float]:
    """The conditions active now, with when each started."""
    with _state(state_dir) as current:
        return dict(current)


@contextmanager
def _state(state_dir: Path) -> Iterator[dict[str, float]]:
    path = state_dir / STATE_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        log.warning("cannot use %s: %s", path, exc.strerror)
        yield {}
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = b""
        while chunk := os.read(fd, 65536):
            raw += chunk
        try:
            loaded = json.loads(raw or b"{}")
        except ValueError:
            loaded = {}
        current = {str(k): float(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
        before = dict(current)
        yield current
        if current != before:
            data = json.dumps(current, sort_keys=True).encode()
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, data)
            os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _post(state_dir: Path, body: dict[str, Any]) -> None:
    with _lock:
        settings = _webhooks.get(state_dir)
    if settings is None or not settings.webhook_url:
        return
    payload = {"source": "cfban", "host": socket.gethostname(), **body}
    thread = threading.Thread(target=_send, args=(settings, payload), name="notify", daemon=True)
    with _lock:
        _threads[:] = [t for t in _threads if t.is_alive()]
        _threads.append(thread)
    thread.start()


def _send(settings: NotifySettings, payload: dict[str, Any]) -> None:
    assert settings.webhook_url is not None
    data = json.dumps(payload).encode()
    pause, problem = 1.0, "no answer"
    for attempt in range(1, settings.attempts + 1):
        # urllib rather than httpx: httpx logs every request's URL, and this one may carry
        # a secret.
        request = urllib.request.Request(
            settings.webhook_url,
            data=data,
            headers={"Content-Type": "application/json", "User-Agent": "cfban"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=settings.timeout):  # noqa: S310
                log.info("webhook notified: %s", payload.get("event"))
                return
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                break  # the receiver refuses this body: retrying will not help
        except (OSError, ValueError) as exc:
            problem = type(exc).__name__
        if attempt < settings.attempts:
            time.sleep(pause)
            pause = min(pause * 2, 30.0)
    log.warning("the [notify] webhook did not take the %s event (%s)", payload.get("event"),
                problem)  # fmt: skip


@atexit.register
def _drain_at_exit() -> None:
    give_up = time.monotonic() + EXIT_WAIT
    with _lock:
        pending = list(_threads)
    for thread in pending:
        thread.join(max(0.0, give_up - time.monotonic()))
