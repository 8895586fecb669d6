"""Refreshing Cloudflare's ranges from ``GET {api_url}/ips`` (no token needed).

The answer is checked before anything is written: it must be Cloudflare's JSON envelope with
``success: true``, and ``result.ipv4_cidrs`` and ``result.ipv6_cidrs`` must both be non-empty
lists in which every entry is a CIDR of the right family, public, and no broader than a /8
(IPv4) or /16 (IPv6). An HTML challenge page, an empty or partial answer, or an error keeps
the previous set: the refresh raises and the stored file is left alone. A range list that
trusted ``0.0.0.0/0`` would make every peer "Cloudflare" and every header believable.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cfban import __version__
from cfban.clock import Clock, SystemClock
from cfban.errors import CloudflareError, TransportError
from cfban.realip._ranges import CloudflareRanges, load_ranges, store_ranges

if TYPE_CHECKING:
    from cfban.config import Settings

if TYPE_CHECKING:
    import httpx

__all__ = ["RefreshResult", "fetch_ranges", "refresh_ranges"]

log = logging.getLogger(__name__)

_MIN_PREFIX = {4: 8, 6: 16}
_KEEP = "the ranges in use were kept"


@dataclass(frozen=True)
class RefreshResult:
    """What a refresh did: the ranges now in use and what changed against the previous set."""

    ranges: CloudflareRanges
    added: tuple[str, ...]
    removed: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def _cidrs(result: dict[str, Any], key: str, version: int, url: str) -> tuple[str, ...]:
    values = result.get(key)
    if not isinstance(values, list) or not values:
        raise CloudflareError(
            f"Cloudflare's answer from {url} has no {key}; {_KEEP}",
            hint="this looks like a partial answer; try again later",
        )
    cidrs: list[str] = []
    for value in values:
        try:
            if not isinstance(value, str) or "/" not in value:
                raise ValueError
            net = ipaddress.ip_network(value.strip(), strict=True)
        except ValueError:
            raise CloudflareError(
                f"Cloudflare's answer from {url} lists {value!r} in {key}, "
                f"which is not a CIDR network; {_KEEP}"
            ) from None
        if net.version != version:
            raise CloudflareError(
                f"Cloudflare's answer from {url} lists {net} in {key}, "
                f"which is not IPv{version}; {_KEEP}"
            )
        if net.prefixlen < _MIN_PREFIX[version] or not net.is_global:
            raise CloudflareError(
                f"Cloudflare's answer from {url} lists {net} in {key}, which is too broad or "
                f"not a public range to trust as Cloudflare; {_KEEP}"
            )
        cidrs.append(str(net))
    return tuple(cidrs)


def _parse(response: httpx.Response, url: str, clock: Clock) -> CloudflareRanges:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise TransportError(
            f"{url} answered HTTP {response.status_code} with something that is not JSON "
            f"(an HTML challenge or error page?); {_KEEP}",
            status=response.status_code,
            hint="try again later; check [cloudflare] api_url / CFBAN_API_URL",
        ) from None
    if not isinstance(body, dict) or "success" not in body:
        raise TransportError(
            f"{url} answered with JSON that is not Cloudflare's envelope; {_KEEP}",
            status=response.status_code,
            hint="check [cloudflare] api_url / CFBAN_API_URL",
        )
    if body.get("success") is not True or response.status_code != 200:
        errors = body.get("errors") or []
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        code = first.get("code") if isinstance(first.get("code"), int) else None
        message = first.get("message") or "no error message"
        raise CloudflareError(
            f"Cloudflare refused GET {url} (HTTP {response.status_code}): {message}; {_KEEP}",
            code=code,
            status=response.status_code,
        )
    result = body.get("result")
    if not isinstance(result, dict):
        raise CloudflareError(f"Cloudflare's answer from {url} has no result; {_KEEP}")
    etag = result.get("etag")
    return CloudflareRanges(
        _cidrs(result, "ipv4_cidrs", 4, url),
        _cidrs(result, "ipv6_cidrs", 6, url),
        source=f"fetched from {url}",
        fetched_at=clock.now(),
        etag=etag if isinstance(etag, str) else None,
        url=url,
    )


def fetch_ranges(
    settings: Settings,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Clock | None = None,
) -> CloudflareRanges:
    """Fetch and validate the ranges from ``GET {api_url}/ips``; nothing is stored.

    Raises:
        TransportError: the API could not be reached or did not answer with JSON.
        CloudflareError: the answer is an error, or empty, partial or invalid.
    """
    import httpx  # here, not at the top: `cfban ban` imports this package and must start fast

    url = settings.cloudflare.api_url.rstrip("/") + "/ips"
    headers = {"User-Agent": f"cfban/{__version__}", "Accept": "application/json"}
    try:
        with httpx.Client(
            transport=transport, timeout=settings.cloudflare.timeout, headers=headers
        ) as client:
            response = client.get(url)
    except httpx.HTTPError as exc:
        raise TransportError(
            f"cannot reach {url}: {type(exc).__name__}: {exc}; {_KEEP}",
            hint="check the network and [cloudflare] api_url / CFBAN_API_URL",
        ) from None
    return _parse(response, url, clock or SystemClock())


def refresh_ranges(
    settings: Settings,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Clock | None = None,
) -> RefreshResult:
    """Fetch the ranges, store them in the state directory, and say what changed.

    Raises:
        TransportError, CloudflareError: see :func:`fetch_ranges`; nothing was written.
        StateError: the state directory cannot be written.
    """
    previous = load_ranges(settings)
    fetched = fetch_ranges(settings, transport=transport, clock=clock)
    stored = store_ranges(settings, fetched)
    old = set(previous.ipv4 + previous.ipv6)
    new = set(stored.ipv4 + stored.ipv6)
    added = tuple(c for c in stored.ipv4 + stored.ipv6 if c not in old)
    removed = tuple(c for c in previous.ipv4 + previous.ipv6 if c not in new)
    log.info("Cloudflare ranges refreshed: %d added, %d removed", len(added), len(removed))
    return RefreshResult(stored, added, removed)
