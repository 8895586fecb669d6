"""The emulator: one object holding state, options, faults, the rate limiter and the log, and
the request pipeline shared by the in-process handler and the HTTP server.

Pipeline: strip ``/client/v4`` → fault plan (edge faults answer here, state untouched) → under
the lock: route → authenticate → rate limit → authorize → due bulk operations → handler →
``Ratelimit`` headers → post-faults (``slow``, ``applied_then_dropped``) → request log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from cfban.clock import Clock, SystemClock

from . import _routes_access, _routes_lists, _routes_misc, _routes_rulesets
from ._envelope import ApiError, Drop, Reply, html_reply, no_route
from ._faults import EDGE_KINDS, Fault, FaultPlan
from ._log import LoggedRequest, RequestLog
from ._ratelimit import RateLimiter
from ._router import Ctx, Options, Route, Router
from ._routes_lists import complete_due
from ._seed import SeedMixin
from ._state import Ids, Plan, State, Token, is_id, rfc3339

BASE_PATH = "/client/v4"
BASE_URL = "https://api.cloudflare.com" + BASE_PATH
DEFAULT_ACCOUNT_ID = "acc0" + "0" * 24 + "0001"
DEFAULT_ZONE_ID = "20e0" + "0" * 24 + "0001"
DEFAULT_TOKEN = "cfut_emulator_test_token_all_permissions_0001"
RATE_LIMITED = "Please wait and consider throttling your request speed"
_HTML_TITLES = {
    429: "Rate limited",
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
    504: "504 Gateway Time-out",
    520: "Web server is returning an unknown error",
    522: "Connection timed out",
}


def _build_router() -> Router:
    router = Router()
    for module in (_routes_misc, _routes_access, _routes_lists, _routes_rulesets):
        module.register(router)
    return router


_ROUTER = _build_router()


def _auth_error() -> ApiError:
    return ApiError(403, 10000, "Authentication error")


def _bad_header() -> ApiError:
    chain = [{"code": 6111, "message": "Invalid format for Authorization header"}]
    return ApiError(400, 6003, "Invalid request headers", error_chain=chain)


class Emulator(SeedMixin):
    """A stateful Cloudflare API v4 emulator. See the package docstring for the tour."""

    def __init__(
        self,
        *,
        account_id: str = DEFAULT_ACCOUNT_ID,
        zone_id: str = DEFAULT_ZONE_ID,
        zone_name: str = "example.com",
        plan: Plan = "free",
        token: str | None = DEFAULT_TOKEN,
        clock: Clock | None = None,
        seed: int = 0,
        rate_limit: int = 1200,
        rate_window: float = 300.0,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.options = Options()
        self.faults = FaultPlan(seed)
        self.log = RequestLog()
        self.ratelimiter = RateLimiter(rate_limit, rate_window, rate_window)
        self.state = State(Ids(seed))
        self._lock = threading.RLock()
        self.account_id = account_id
        self.zone_id = zone_id
        self.add_account(account_id, "Example account")
        self.add_zone(zone_id, zone_name, plan=plan)
        self.token = token or ""
        if token:
            self.add_token(token)

    # -- in-process use -----------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        """Answer an httpx request (for ``httpx.MockTransport`` or a pytest-httpx callback).

        Raises:
            httpx.RemoteProtocolError: a ``drop`` or ``applied_then_dropped`` fault.
            httpx.ReadTimeout: a ``timeout`` fault, or a ``slow`` one at least as long as the
                request's read timeout.
        """
        body = request.read()
        timeouts = request.extensions.get("timeout") or {}
        headers = {k.lower(): v for k, v in request.headers.items()}
        outcome = self.process(
            request.method,
            request.url.raw_path.decode("ascii"),
            headers,
            body,
            sleep=time.sleep,
            read_timeout=timeouts.get("read"),
        )
        if isinstance(outcome, Drop):
            if outcome.kind == "timeout":
                raise httpx.ReadTimeout("emulated read timeout", request=request)
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        return httpx.Response(
            outcome.status, headers=outcome.headers, content=outcome.body, request=request
        )

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        """An httpx client on the in-process transport, authenticated with ``token``
        (default: the all-permissions token)."""
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(
            base_url=BASE_URL, transport=self.transport(), headers=headers, **kwargs
        )

    def count(self, method: str | None = None, pattern: str | None = None) -> int:
        """Requests logged for ``method`` and path ``pattern`` (see ``RequestLog.count``)."""
        return self.log.count(method, pattern)

    def advance(self, seconds: float) -> None:
        """Move a fake clock forward (rate-limit windows, bulk operation completion)."""
        advance: Callable[[float], None] | None = getattr(self.clock, "advance", None)
        if advance is None:
            raise TypeError("advance() needs a clock with advance(), e.g. cfban.clock.FakeClock")
        advance(seconds)

    # -- the pipeline ---------------------------------------------------------------------------

    def process(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        sleep: Callable[[float], object],
        read_timeout: float | None = None,
    ) -> Reply | Drop:
        """Run one request (``target`` = path and query; ``headers`` keys lowercased)."""
        method = method.upper()
        parts = urlsplit(target)
        full_path = unquote(parts.path)
        inside = full_path.startswith(BASE_PATH + "/")
        path = full_path[len(BASE_PATH) :] if inside else full_path
        fault = self.faults.pick(method, path)
        outcome: Reply | Drop
        if fault is not None and fault.kind in EDGE_KINDS:
            outcome = self._edge(fault)
            self._record(method, path, parts.query, outcome, fault, applied=False)
            return outcome
        with self._lock:
            if not inside:
                outcome = no_route(full_path).reply()
            else:
                outcome = self._dispatch(method, path, parse_qs(parts.query), headers, body)
        if fault is not None and fault.kind == "applied_then_dropped":
            outcome = Drop("drop")
        elif fault is not None and fault.kind == "slow":
            if read_timeout is not None and fault.delay >= read_timeout:
                outcome = Drop("timeout")
            else:
                sleep(fault.delay)
        self._record(method, path, parts.query, outcome, fault, applied=True)
        return outcome

    def _record(
        self,
        method: str,
        path: str,
        query: str,
        outcome: Reply | Drop,
        fault: Fault | None,
        *,
        applied: bool,
    ) -> None:
        status = outcome.status if isinstance(outcome, Reply) else None
        kind = fault.kind if fault is not None else None
        self.log.add(LoggedRequest(method, path, query, status, kind, applied))

    def _edge(self, fault: Fault) -> Reply | Drop:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        if fault.kind == "error_json":
            # 5xx JSON body: the code is UNVERIFIED; 10013 "An unknown error has occurred".
            unknown = ApiError(
                fault.status, 10013, "An unknown error has occurred", headers=headers
            )
            return unknown.reply()
        if fault.kind == "error_html":
            return html_reply(fault.status, _HTML_TITLES.get(fault.status, "Error"), headers)
        if fault.kind == "rate_limit_json":
            return ApiError(429, 971, RATE_LIMITED, headers=headers).reply()
        if fault.kind == "rate_limit_html":
            return html_reply(429, _HTML_TITLES[429], headers)
        if fault.kind == "timeout":
            return Drop("timeout", fault.delay)
        return Drop("drop")

    def _dispatch(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Reply:
        now = self.clock.now()
        token: Token | None = None
        try:
            route, params = _ROUTER.match(method, path)
            if not route.public:
                token = self._authenticate(headers, route)
                retry = self.ratelimiter.hit(token.value, now)
                if retry is not None:
                    raise ApiError(429, 971, RATE_LIMITED, headers={"Retry-After": str(retry)})
                self._authorize(token, route, params, path)
            complete_due(self.state, self.options, now)
            ctx = Ctx(self.state, self.options, now, method, path, params, query, body, token)
            reply = route.handler(ctx)
        except ApiError as error:
            reply = error.reply()
        if token is not None:
            reply.headers.update(self.ratelimiter.headers(token.value, now))
        return reply

    def _authenticate(self, headers: Mapping[str, str], route: Route) -> Token:
        auth = headers.get("authorization")
        if auth is None:
            if "x-auth-key" in headers or "x-auth-email" in headers:
                # Global API keys are not emulated: every legacy credential is unknown.
                raise ApiError(400, 9103, "Unknown X-Auth-Key or X-Auth-Email")
            raise _bad_header()  # missing: 400/6003 per §8 item 6
        scheme, _, value = auth.strip().partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value or any(c.isspace() for c in value):
            raise _bad_header()
        token = self.state.tokens.get(value)
        verify = route.template.endswith("/tokens/verify")
        if token is None or (token.status != "active" and not verify):
            # Status for 1000 varies in the wild (§1); 401 is chosen.
            raise ApiError(401, 1000, "Invalid API Token")
        return token

    def _authorize(self, token: Token, route: Route, params: dict[str, str], path: str) -> None:
        for name, value in params.items():
            if name.endswith("_id") and not is_id(value):
                raise no_route(path)
        if "zone_id" in params:
            zone = self.state.zones.get(params["zone_id"])
            if zone is None or not token.covers_zone(zone):
                raise _auth_error()
        if "account_id" in params and not route.template.endswith("/tokens/verify"):
            account = params["account_id"]
            if account not in self.state.accounts or not token.covers_account(account):
                raise _auth_error()
        if route.permissions and not any(token.allows(p) for p in route.permissions):
            raise _auth_error()

    def _stamp(self) -> str:
        return rfc3339(self.clock.now())
