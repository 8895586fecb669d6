"""What Cloudflare answered: the envelope of a success, or the error a failure maps to.

=====================================  =============================================
what came back                         what it becomes
=====================================  =============================================
2xx, ``success: true``                 an :class:`Envelope`
429                                    retryable :class:`RateLimitedError`, with the
                                       wait ``Retry-After`` asks for (seconds or date)
5xx; a body that is not the envelope   retryable :class:`CloudflareError` /
                                       :class:`TransportError`
invalid token (1000, 6003, 9103, 401)  :class:`AuthError`: check ``CLOUDFLARE_API_TOKEN``
missing permission (10000, 403)        :class:`AuthError` naming the permission needed
404                                    :class:`NotFoundError`: check the zone/account id
anything else                          :class:`CloudflareError` with code and message
=====================================  =============================================
"""

from __future__ import annotations

import datetime
import email.utils
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from cfban.errors import AuthError, CloudflareError, TransportError
from cfban.errors import NotFoundError as NotFoundError  # defined there, re-exported here
from cfban.errors import RetryLaterError as RetryLaterError

_TOKEN_CODES = frozenset({1000, 6003, 6111, 9103})
_PERMISSION_CODES = frozenset({10000, 9109})
_TOKEN_HINT = (
    "check CLOUDFLARE_API_TOKEN (or api_token_file): the token may be mistyped, expired or "
    "revoked; create one under My Profile > API Tokens"
)
_SCOPE_PATH = re.compile(r"^/(zones|accounts)/([^/]+)")


@dataclass(frozen=True)
class Envelope:
    """A successful answer: ``result``, and ``result_info`` on paginated collections."""

    result: Any
    result_info: dict[str, Any] = field(default_factory=dict)
    messages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Failure:
    """One attempt that failed; ``retry_after`` is set when the server asked for a wait."""

    error: CloudflareError
    retryable: bool
    retry_after: float | None = None


def _scope_hint(path: str) -> str:
    match = _SCOPE_PATH.match(path)
    if match is None:
        return "the resource does not exist"
    kind, ident = match.groups()
    setting = "zone_id" if kind == "zones" else "account_id"
    return (
        f"check {setting} {ident!r} (it is shown on the Overview page in the Cloudflare "
        "dashboard), or the resource was deleted in the meantime"
    )


def _messages(items: Any) -> list[tuple[int | None, str]]:
    found: list[tuple[int | None, str]] = []
    if not isinstance(items, list):
        return found
    for item in items:
        if not isinstance(item, Mapping):
            continue
        code = item.get("code")
        found.append((code if isinstance(code, int) else None, str(item.get("message", ""))))
        found.extend(_messages(item.get("error_chain")))
    return found


def classify(
    response: httpx.Response,
    where: str,
    path: str,
    permission: str | None,
    idempotent: bool,
    now: float,
) -> Envelope | Failure:
    status = response.status_code
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict) or "success" not in body:
        return _not_envelope(status, where, path, permission, response, now, idempotent)
    problems = _messages(body.get("errors"))
    if 200 <= status < 300 and body.get("success") is True:
        info = body.get("result_info")
        notes = tuple(msg for _, msg in _messages(body.get("messages")))
        return Envelope(body.get("result"), info if isinstance(info, dict) else {}, notes)
    code = next((c for c, _ in problems if c is not None), None)
    text = "; ".join(f"{c}: {m}" if c is not None else m for c, m in problems)
    text = text or f"HTTP {status}"
    if status == 429:
        return _rate_limited(response, where, text, code, now)
    if status >= 500:
        return Failure(
            CloudflareError(f"Cloudflare failed {where}: {text}", code=code, status=status),
            retryable=idempotent,
            retry_after=parse_retry_after(response.headers, now),
        )
    codes = {c for c, _ in problems if c is not None}
    if codes & _TOKEN_CODES or (status == 401 and not codes & _PERMISSION_CODES):
        return Failure(
            AuthError(
                f"Cloudflare rejected the API token for {where}: {text}",
                code=code,
                status=status,
                hint=_TOKEN_HINT,
            ),
            retryable=False,
        )
    if codes & _PERMISSION_CODES or status in (401, 403):
        error = _permission_error(where, text, code, status, permission)
        return Failure(error, retryable=False)
    if status == 404:
        return Failure(
            NotFoundError(
                f"Cloudflare found nothing at {where}: {text}",
                code=code,
                status=status,
                hint=_scope_hint(path),
            ),
            retryable=False,
        )
    return Failure(
        CloudflareError(f"Cloudflare refused {where}: {text}", code=code, status=status),
        retryable=False,
    )


def _permission_error(
    where: str, text: str, code: int | None, status: int, permission: str | None
) -> AuthError:
    need = f"the {permission!r} permission" if permission else "the needed permission"
    return AuthError(
        f"the API token may not do {where}: {text}",
        code=code,
        status=status,
        hint=f"give the token {need} for this zone/account (My Profile > API Tokens)",
    )


def _not_envelope(
    status: int,
    where: str,
    path: str,
    permission: str | None,
    response: httpx.Response,
    now: float,
    idempotent: bool,
) -> Failure:
    kind = response.headers.get("content-type", "unknown content").split(";")[0]
    message = f"Cloudflare answered {where} with HTTP {status} and a {kind} body"
    if status == 429:
        return _rate_limited(response, where, f"HTTP 429 ({kind} body)", None, now)
    if status == 401:
        return Failure(AuthError(message, status=status, hint=_TOKEN_HINT), False)
    if status == 403:
        return Failure(_permission_error(where, message, None, status, permission), False)
    if status == 404:
        return Failure(NotFoundError(message, status=status, hint=_scope_hint(path)), False)
    return Failure(
        TransportError(
            message + ", not its JSON envelope",
            status=status,
            hint="a proxy or an outage may be in the way; check [cloudflare] api_url",
        ),
        retryable=idempotent,
        retry_after=parse_retry_after(response.headers, now),
    )


def _rate_limited(
    response: httpx.Response, where: str, text: str, code: int | None, now: float
) -> Failure:
    wait = parse_retry_after(response.headers, now)
    return Failure(
        RetryLaterError(
            f"Cloudflare rate-limited {where}: {text}",
            retry_after=wait,
            code=code,
            status=429,
            hint=(
                "the API allows 1,200 requests per 5 minutes per user; cfban will try "
                "again later, lower [cloudflare] requests_per_window if it keeps happening"
            ),
        ),
        retryable=True,
        retry_after=wait,
    )


def parse_retry_after(headers: httpx.Headers, now: float) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms``."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now)
