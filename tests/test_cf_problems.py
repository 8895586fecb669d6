"""Delivery problems: classification, the record, the retry gate, the host-wide 429 pause,
the budget share, the figures shown by status/health/check/metrics, and the webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from cfban import notify
from cfban.clock import FakeClock
from cfban.cloudflare import (
    BanEntry,
    HostRateLimiter,
    ListFullError,
    NotFoundError,
    RetryLaterError,
    classify,
    cloudflare_checks,
    cloudflare_status,
    make_backend,
    read_problem,
)
from cfban.config import NotifySettings, Settings
from cfban.delivery import deliver
from cfban.errors import AuthError, CloudflareError, TransportError
from cfban.state import StateStore
from cfban.watch._metrics import EXPORTED, Metrics
from cfban.watch._status import Status, judge
from tests.cfemu import BASE_URL, Emulator
from tests.support.waiting import wait_until

T0 = 1_800_000_000.0


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ListFullError("full"), "list_full"),
        (AuthError("Invalid API Token", code=1000, status=401), "token_invalid"),
        (AuthError("Authentication error", code=10000, status=403), "permission"),
        (NotFoundError("gone", status=404), "not_found"),
        (RetryLaterError("429", retry_after=30, status=429), "rate_limited"),
        (RetryLaterError("budget", retry_after=30), "budget_spent"),
        (TransportError("down"), "unreachable"),
        (CloudflareError("HTTP 502", status=502), "unreachable"),
        (CloudflareError("bad value", status=400, code=10035), "refused"),
        (ValueError("bug"), "other"),
    ],
)
def test_classify(error: Exception, kind: str) -> None:
    problem = classify(error)
    assert problem.kind == kind
    assert problem.fix and problem.message


class Failing:
    """A backend that fails with ``error`` until ``error`` is None; counts calls."""

    name = "failing"

    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.calls = 0

    def add(self, entries: Any) -> dict[str, str]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return {e.target: "r" for e in entries}

    def remove(self, targets: Any, *, not_after: float | None) -> list[str]:
        self.calls += 1
        return [t for t, _ in targets]

    def list_owned(self) -> list[Any]:
        return []

    def setup(self) -> list[str]:
        return []

    def check(self) -> list[tuple[str, bool, str]]:
        return []


def _ban(store: StateStore, start: int, n: int) -> None:
    for i in range(start, start + n):
        target = f"198.51.100.{i}"
        store.hold(address=target, target=target, jail="j", expires_at=None)


def test_a_persistent_problem_is_retried_a_few_times_a_minute(tmp_path: Path) -> None:
    clock = FakeClock()
    store = StateStore.open(tmp_path, clock)
    backend = Failing(AuthError("Invalid API Token", code=1000, status=401))
    calls_at: list[float] = []
    for second in range(120):
        _ban(store, second % 200 + 1, 1)  # a new ban every second
        before = backend.calls
        deliver(store, backend, clock=clock, state_dir=tmp_path)
        if backend.calls > before:
            calls_at.append(clock.now())
        clock.sleep(1)
    # then after 10, 20, 40, then every 60 s: four tries in two minutes, not 120
    assert [t - calls_at[0] for t in calls_at] == [0, 10, 30, 70]
    problem = read_problem(tmp_path)
    assert problem is not None and problem.kind == "token_invalid" and problem.failures == 4
    backend.error = None  # the token is fixed
    clock.sleep(60)
    report = deliver(store, backend, clock=clock, state_dir=tmp_path)
    assert report.queue_depth == 0 and len(report.added) == 120
    assert read_problem(tmp_path) is None


def test_transient_failures_keep_the_usual_backoff(tmp_path: Path) -> None:
    clock = FakeClock()
    store = StateStore.open(tmp_path, clock)
    backend = Failing(CloudflareError("HTTP 502", status=502))
    _ban(store, 1, 1)
    deliver(store, backend, clock=clock, state_dir=tmp_path)
    problem = read_problem(tmp_path)
    assert problem is not None and problem.retry_at == clock.now()  # no gate at first
    clock.sleep(2)
    backend.error = None
    assert deliver(store, backend, clock=clock, state_dir=tmp_path).added


def test_a_429_pauses_every_process_on_the_host(tmp_path: Path) -> None:
    emu = Emulator(clock=FakeClock(), rate_limit=2, rate_window=60)
    settings = Settings.model_validate(
        {
            "cloudflare": {
                "api_token": emu.token,
                "api_url": BASE_URL,
                "zone_id": emu.zone_id,
                "requests_per_window": 1000,
                "budget_share": 1.0,
            }
        }  # fmt: skip
    )
    one = make_backend(settings, clock=emu.clock, state_dir=tmp_path, transport=emu.transport())
    assert len(one.add([BanEntry(f"203.0.113.{n}", T0, ()) for n in range(1, 4)])) == 3
    # one 429, then a wait for Retry-After instead of more requests into the block
    assert sum(1 for e in emu.log.entries if e.status == 429) == 1
    pause_until = float((tmp_path / "ratelimit.pause").read_text())
    assert pause_until > T0 - 10**9  # written, as epoch seconds


def test_the_pause_holds_other_processes(tmp_path: Path) -> None:
    clock = FakeClock()
    one = HostRateLimiter(tmp_path / "ratelimit", limit=10, window=60, clock=clock)
    other = HostRateLimiter(tmp_path / "ratelimit", limit=10, window=60, clock=clock, max_wait=1)
    one.pause(30)
    assert other.paused_for() == 30
    with pytest.raises(RetryLaterError, match="budget"):
        other.acquire()  # the hook must return fast: it leaves the work queued
    other.max_wait = None
    assert other.acquire() == 30  # the daemon waits it out
    assert one.paused_for() == 0


def test_the_budget_is_a_share_of_the_account_limit(tmp_path: Path) -> None:
    settings = Settings.model_validate({"cloudflare": {"api_token": "t", "backend": "list",
                                                       "account_id": "a" * 32}})  # fmt: skip
    figures = cloudflare_status(settings, tmp_path, FakeClock())
    assert figures["budget"]["limit"] == 600  # half of 1,200 per 5 minutes
    assert figures["list_writes"]["limit"] == 15_000  # half of 30,000 per 12 hours
    assert figures["problem"] is None
    names = [name for name, ok, _ in cloudflare_checks(figures) if ok]
    assert names == ["delivery", "request budget"]


def test_status_health_and_metrics_show_the_problem(tmp_path: Path) -> None:
    clock = FakeClock()
    store = StateStore.open(tmp_path, clock)
    _ban(store, 1, 3)
    deliver(store, Failing(ListFullError("the IP list is full")), clock=clock, state_dir=tmp_path)
    settings = Settings.model_validate({"cloudflare": {"api_token": "t"}})
    figures = cloudflare_status(settings, tmp_path, clock)
    assert figures["problem"]["kind"] == "list_full"
    verdict = judge(Status(clock.now(), None, cloudflare=figures), 900)
    assert not verdict.ok and "list_full" in verdict.reason and "on_full" in verdict.reason
    metrics = Metrics(now=clock.now, oldest_queued_at=clock.now() - 42)
    metrics.cloudflare = lambda: figures
    text = metrics.prometheus()
    assert 'cfban_delivery_problem{kind="list_full"} 1' in text
    assert 'cfban_delivery_problem{kind="token_invalid"} 0' in text
    assert "cfban_oldest_queued_age_seconds 42" in text
    assert 'cfban_budget_left{budget="budget"} 600' in text
    exported = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert exported <= EXPORTED
    assert EXPORTED - exported <= {"cfban_list_items", "cfban_list_capacity",
                                   "cfban_list_fill_ratio"}  # fmt: skip


# -- the webhook ------------------------------------------------------------------------------


class Receiver:
    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.fail_first = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.fail_first > 0:
                    outer.fail_first -= 1
                    self.send_response(503)
                else:
                    outer.bodies.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?secret=s3"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver(fail_first=1)
    yield made
    made.server.shutdown()
    made.server.server_close()


def test_one_post_per_condition_retried_never_blocking(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    notify.configure(tmp_path, NotifySettings(webhook_url=receiver.url, timeout=2))
    clock = FakeClock()
    store = StateStore.open(tmp_path, clock)
    backend = Failing(AuthError("Invalid API Token", code=1000, status=401))
    _ban(store, 1, 2)
    for _ in range(4):  # four failing rounds: one notification
        deliver(store, backend, clock=clock, state_dir=tmp_path)
        clock.sleep(61)
    wait_until(lambda: len(receiver.bodies) == 1, 10)
    backend.error = None
    deliver(store, backend, clock=clock, state_dir=tmp_path)
    wait_until(lambda: len(receiver.bodies) == 2, 10)
    stalled, recovered = receiver.bodies
    assert stalled["event"] == "stalled" and stalled["kind"] == "token_invalid"
    assert "API Tokens" in stalled["fix"] and stalled["queued"] == 2
    assert recovered["event"] == "recovered" and recovered["since"] == stalled["at"]
    assert "s3" not in caplog.text  # the URL may carry a secret
    notify.configure(tmp_path, NotifySettings())


def test_an_unreachable_webhook_does_not_hold_delivery(tmp_path: Path) -> None:
    notify.configure(tmp_path, NotifySettings(webhook_url="http://127.0.0.1:9/x", timeout=1))
    clock = FakeClock()
    store = StateStore.open(tmp_path, clock)
    _ban(store, 1, 1)
    deliver(store, Failing(NotFoundError("gone")), clock=clock, state_dir=tmp_path)
    assert notify.active(tmp_path) == {"stalled": clock.now()}
    notify.configure(tmp_path, NotifySettings())


def test_notify_config_refuses_a_non_http_url() -> None:
    with pytest.raises(ValueError, match="http"):
        NotifySettings(webhook_url="file:///etc/passwd")


def test_httpx_is_what_sends(receiver: Receiver) -> None:
    # The receiver itself works (so the tests above check something).
    assert httpx.post(receiver.url, json={"x": 1}).status_code == 503
    assert httpx.post(receiver.url, json={"x": 1}).status_code == 204
