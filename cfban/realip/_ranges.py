"""Cloudflare's published IP ranges: bundled, stored after a refresh, loaded.

cfban ships the ranges Cloudflare published (``BUNDLED_IPV4`` / ``BUNDLED_IPV6``, as served by
``https://www.cloudflare.com/ips-v4`` and ``ips-v6``, 2026-07-02). ``cfban ips --refresh``
fetches ``GET {api_url}/ips`` (see :mod:`cfban.realip._refresh`) and stores the answer in the
state directory as ``cloudflare-ranges.json``; :func:`load_ranges` prefers that file and falls
back to the bundled set when it is missing or unreadable. The file is replaced atomically
(temporary file + rename), so a reader never sees half of it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfban.errors import StateError
from cfban.files import write_atomic
from cfban.realip._netset import Address, Network, NetworkSet

if TYPE_CHECKING:
    from cfban.config import Settings

__all__ = [
    "BUNDLED_IPV4",
    "BUNDLED_IPV6",
    "RANGES_FILE",
    "CloudflareRanges",
    "load_ranges",
    "ranges_path",
    "store_ranges",
]

log = logging.getLogger(__name__)

RANGES_FILE = "cloudflare-ranges.json"
BUNDLED_DATE = "2026-07-02"

BUNDLED_IPV4: tuple[str, ...] = (
    "173.245.48.0/20",
    "103.21.244.0/22",
    "103.22.200.0/22",
    "103.31.4.0/22",
    "141.101.64.0/18",
    "108.162.192.0/18",
    "190.93.240.0/20",
    "188.114.96.0/20",
    "197.234.240.0/22",
    "198.41.128.0/17",
    "162.158.0.0/15",
    "104.16.0.0/13",
    "104.24.0.0/14",
    "172.64.0.0/13",
    "131.0.72.0/22",
)
BUNDLED_IPV6: tuple[str, ...] = (
    "2400:cb00::/32",
    "2606:4700::/32",
    "2803:f800::/32",
    "2405:b500::/32",
    "2405:8100::/32",
    "2a06:98c0::/29",
    "2c0f:f248::/32",
)


@dataclass(frozen=True)
class CloudflareRanges:
    """One set of Cloudflare ranges and where it came from.

    ``source`` says where in words ("bundled ...", "stored in ..."); ``fetched_at`` (epoch
    seconds) and ``etag`` are known for a set fetched from the API.
    """

    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    source: str
    fetched_at: float | None = None
    etag: str | None = None
    url: str | None = None
    _set: NetworkSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_set", NetworkSet([*self.ipv4, *self.ipv6]))

    @classmethod
    def bundled(cls) -> CloudflareRanges:
        """The ranges shipped with cfban."""
        return cls(
            BUNDLED_IPV4,
            BUNDLED_IPV6,
            source=f"bundled with cfban (Cloudflare's list of {BUNDLED_DATE})",
        )

    @property
    def networks(self) -> NetworkSet:
        """All ranges, both families, as a :class:`NetworkSet`."""
        return self._set

    def contains(self, address: Address | str) -> bool:
        """Whether ``address`` belongs to Cloudflare (binary search, not a scan)."""
        return self._set.contains(address)

    def __contains__(self, address: object) -> bool:
        return address in self._set

    def overlaps(self, network: Network | Address) -> bool:
        """Whether any address of ``network`` belongs to Cloudflare."""
        return self._set.overlaps(network)

    def to_json(self) -> dict[str, Any]:
        """The stored form (also what ``cfban ips --json`` prints, plus ``source``)."""
        return {
            "url": self.url,
            "fetched_at": self.fetched_at,
            "etag": self.etag,
            "ipv4_cidrs": list(self.ipv4),
            "ipv6_cidrs": list(self.ipv6),
        }


def ranges_path(settings: Settings) -> Path:
    """Where refreshed ranges are stored: ``<state dir>/cloudflare-ranges.json``."""
    return settings.resolved_state_dir / RANGES_FILE


def load_ranges(settings: Settings) -> CloudflareRanges:
    """The ranges in use for ``settings`` (see :func:`load_ranges_at`)."""
    return load_ranges_at(settings.resolved_state_dir)


def _from_file(path: Path) -> CloudflareRanges:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    ipv4 = data.get("ipv4_cidrs")
    ipv6 = data.get("ipv6_cidrs")
    if not (isinstance(ipv4, list) and ipv4 and isinstance(ipv6, list) and ipv6):
        raise ValueError("ipv4_cidrs or ipv6_cidrs missing or empty")
    if not all(isinstance(item, str) for item in [*ipv4, *ipv6]):
        raise ValueError("a range is not a string")
    fetched = data.get("fetched_at")
    etag = data.get("etag")
    url = data.get("url")
    ranges = CloudflareRanges(
        tuple(ipv4),
        tuple(ipv6),
        source=f"stored in {path}",
        fetched_at=float(fetched) if isinstance(fetched, int | float) else None,
        etag=etag if isinstance(etag, str) else None,
        url=url if isinstance(url, str) else None,
    )
    families = {net.version for net in ranges.networks.networks}
    if families != {4, 6}:
        raise ValueError("a range is in the wrong address family")
    return ranges


def load_ranges_at(state_dir: Path) -> CloudflareRanges:
    """The ranges in use: the stored refresh when there is a readable one, else bundled.

    A stored file that cannot be read or parsed is reported in ``source`` (and logged) and
    the bundled ranges are used: a broken file must not stop cfban from refusing edge bans.
    """
    path = state_dir / RANGES_FILE
    try:
        return _from_file(path)
    except FileNotFoundError:
        return CloudflareRanges.bundled()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        log.warning("ignoring %s (%s); using the bundled Cloudflare ranges", path, reason)
        bundled = CloudflareRanges.bundled()
        return CloudflareRanges(
            bundled.ipv4,
            bundled.ipv6,
            source=f"{bundled.source}; {path} is unreadable ({reason}), "
            "run `cfban ips --refresh` to replace it",
        )


def store_ranges(settings: Settings, ranges: CloudflareRanges) -> CloudflareRanges:
    """Write ``ranges`` to the state directory atomically; return them as loaded from there.

    Raises:
        StateError: the state directory or the file cannot be written.
    """
    path = ranges_path(settings)
    text = json.dumps(ranges.to_json(), indent=2) + "\n"
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise StateError(
            f"cannot write the Cloudflare ranges to {path}: {exc.strerror or exc}",
            hint="check that the state directory (state_dir / CFBAN_STATE_DIR) is writable",
        ) from None
    return CloudflareRanges(
        ranges.ipv4,
        ranges.ipv6,
        source=f"stored in {path}",
        fetched_at=ranges.fetched_at,
        etag=ranges.etag,
        url=ranges.url,
    )
