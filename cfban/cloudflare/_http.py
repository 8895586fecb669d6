"""The raw Cloudflare API request: the one place every call goes through.

:class:`CloudflareHttp` sends a request, checks Cloudflare's JSON envelope and turns every way
a call can fail into a :mod:`cfban.errors` type with a hint the user can act on:

=====================================  =============================================
what came back                         what cfban does
=====================================  =============================================
2xx, ``success: true``                 returns the :class:`Envelope`
429                                    waits ``Retry-After`` (seconds or HTTP date),
                                       else backs off; :class:`RateLimitedError` at the end
5xx, network error, timeout, a body    retried with exponential backoff and jitter
that is not the JSON envelope          (honouring a ``Retry-After``), then
                                       :class:`TransportError`; a call that is not
                                       idempotent only after connection failures
invalid token (1000, 6003, 9103, 401)  :class:`AuthError`: check ``CLOUDFLARE_API_TOKEN``
missing permission (10000, 403)        :class:`AuthError` naming the permission needed
404                                    :class:`NotFoundError`: check the zone/account id
anything else                          :class:`CloudflareError` with code and message
=====================================  =============================================

Retries are bounded by a number of attempts and by a total time; all waiting goes through the
injected :class:`~cfban.clock.Clock`. Before each attempt the optional request budget (see
:mod:`cfban.cloudflare._limiter`) is asked for a slot. The token is sent as
``Authorization: Bearer`` and appears in no log line, exception or repr.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from cfban import __version__
from cfban.clock import Clock
from cfban.cloudflare._answers import Envelope, Failure, NotFoundError, classify
from cfban.cloudflare._stats import record_request
from cfban.config import Settings
from cfban.errors import AuthError, TransportError

__all__ = ["CloudflareHttp", "Envelope", "NotFoundError", "RequestBudget"]

log = logging.getLogger(__name__)


class RequestBudget(Protocol):
    """A client-side request budget: ``acquire`` blocks until one request may be sent."""

    def acquire(self) -> float: ...


class CloudflareHttp:
    """Sends requests to the Cloudflare API v4; see the module docstring for the rules.

    ``max_attempts`` bounds the attempts per call, ``max_retry_seconds`` the total time spent
    waiting between them (a ``Retry-After`` longer than what is left fails at once).
    """

    def __init__(
        self,
        *,
        api_url: str,
        token: SecretStr,
        clock: Clock,
        timeout: float = 10.0,
        budget: RequestBudget | None = None,
        transport: httpx.BaseTransport | None = None,
        max_attempts: int = 5,
        max_retry_seconds: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self._base = api_url.rstrip("/")
        self._clock = clock
        self._budget = budget
        self._max_attempts = max(1, max_attempts)
        self._max_retry_seconds = max_retry_seconds
        self._rng = rng or random.Random()
        self.requests_sent = 0
        self._client = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={
                "Authorization": f"Bearer {token.get_secret_value()}",
                "User-Agent": f"cfban/{__version__}",
            },
            follow_redirects=False,
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Clock,
        budget: RequestBudget | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> CloudflareHttp:
        """A client for the configured API url and token.

        Raises:
            AuthError: no token is configured.
            ConfigError: the token file cannot be read.
        """
        token = settings.token()
        if token is None:
            raise AuthError(
                "no Cloudflare API token is configured",
                hint="set CLOUDFLARE_API_TOKEN or [cloudflare] api_token_file",
            )
        return cls(
            api_url=settings.cloudflare.api_url,
            token=token,
            clock=clock,
            timeout=settings.cloudflare.timeout,
            budget=budget,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"CloudflareHttp({self._base!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> CloudflareHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        permission: str | None = None,
        idempotent: bool = True,
    ) -> Envelope:
        """Send one API call (retrying as the module docstring says); return its envelope.

        ``permission`` names the token permission the call needs, for the error hint.
        A call that is not ``idempotent`` is not retried once it may have reached Cloudflare
        (timeouts while reading, 5xx); it is still retried on 429 and connection failures.

        Raises:
            AuthError, NotFoundError, RateLimitedError, TransportError, CloudflareError.
        """
        started = self._clock.monotonic()
        attempt = 0
        while True:
            attempt += 1
            failure = self._attempt(method, path, params, json_body, permission, idempotent)
            if isinstance(failure, Envelope):
                return failure
            if failure.error.status == 429 and failure.retry_after:
                pause = getattr(self._budget, "pause", None)
                if callable(pause):
                    pause(failure.retry_after)  # every cfban process on the host waits
            if not failure.retryable or attempt >= self._max_attempts:
                raise failure.error
            if failure.retry_after is not None:
                wait = failure.retry_after
            else:
                wait = min(8.0, 0.5 * 2 ** (attempt - 1)) * self._rng.uniform(0.5, 1.0)
            spent = self._clock.monotonic() - started
            if spent + wait > self._max_retry_seconds:
                raise failure.error
            log.warning("%s %s failed (%s); retrying in %.1f s", method, path, failure.error, wait)
            self._clock.sleep(wait)

    def _attempt(
        self,
        method: str,
        path: str,
        params: Mapping[str, str | int] | None,
        json_body: Any,
        permission: str | None,
        idempotent: bool,
    ) -> Envelope | Failure:
        if self._budget is not None:
            self._budget.acquire()
        where = f"{method} {path}"
        self.requests_sent += 1
        try:
            response = self._client.request(
                method,
                self._base + path,
                params=dict(params) if params else None,
                json=json_body,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            record_request(method, path, None)
            return Failure(
                TransportError(
                    f"cannot connect to the Cloudflare API for {where}: {exc}",
                    hint="check the network and [cloudflare] api_url",
                ),
                retryable=True,
            )
        except httpx.TimeoutException:
            record_request(method, path, None)
            return Failure(
                TransportError(
                    f"Cloudflare did not answer {where} in time",
                    hint="raise [cloudflare] timeout if this keeps happening",
                ),
                retryable=idempotent,
            )
        except httpx.HTTPError as exc:
            record_request(method, path, None)
            return Failure(
                TransportError(f"network error during {where}: {type(exc).__name__}: {exc}"),
                retryable=idempotent,
            )
        log.debug("%s -> %d", where, response.status_code)
        record_request(method, path, response.status_code)
        return classify(response, where, path, permission, idempotent, self._clock.now())

    def iter_pages(
        self,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        per_page: int = 100,
        permission: str | None = None,
    ) -> Iterator[Any]:
        """Every item of a page-numbered collection (``page``/``per_page``).

        Stops at an empty page, at the page or item count ``result_info`` gives, or at a short
        page when the server confirms it used our page size (a server that caps ``per_page``
        lower must not make cfban miss the rest).
        """
        page, seen = 1, 0
        while True:
            query: dict[str, str | int] = dict(params or {})
            query.update(page=page, per_page=per_page)
            envelope = self.request("GET", path, params=query, permission=permission)
            items = envelope.result if isinstance(envelope.result, list) else []
            yield from items
            seen += len(items)
            info = envelope.result_info
            total_pages, total_count = info.get("total_pages"), info.get("total_count")
            if not items:
                return
            if isinstance(total_pages, int) and page >= total_pages:
                return
            if isinstance(total_count, int) and seen >= total_count:
                return
            if len(items) < per_page and info.get("per_page") == per_page:
                return
            page += 1

    def iter_cursor(
        self,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        per_page: int = 500,
        permission: str | None = None,
    ) -> Iterator[Any]:
        """Every item of a cursor-paginated collection (``result_info.cursors.after``)."""
        cursor = ""
        seen: set[str] = set()
        while True:
            query: dict[str, str | int] = dict(params or {})
            query["per_page"] = per_page
            if cursor:
                query["cursor"] = cursor
            envelope = self.request("GET", path, params=query, permission=permission)
            items = envelope.result if isinstance(envelope.result, list) else []
            yield from items
            info = envelope.result_info
            cursors = info.get("cursors")
            after = cursors.get("after") if isinstance(cursors, dict) else info.get("cursor")
            if not items or not isinstance(after, str) or not after or after in seen:
                return
            seen.add(after)
            cursor = after
