"""Which address a log line is about: the real-client decision (design §4).

A filter hands over what it captured: the logged address (``<HOST>``, nginx's
``$remote_addr``) and, for the ``cfban`` log format, the named groups ``peer``
(``$realip_remote_addr``, the TCP peer), ``cfip`` (``$http_cf_connecting_ip``) and ``xff``
(``$http_x_forwarded_for``). The rules, in order:

1. No ``peer`` captured (``combined`` format): nginx's realip module already chose the
   client, so the logged address is the client as is (source ``logged``).
2. The peer is a *trusted peer* (Cloudflare's ranges or ``[realip] trusted_proxies``):
   - with ``[realip] use_x_forwarded_for = true``, ``X-Forwarded-For`` walked from the right
     past trusted peers gives the client (source ``x-forwarded-for``); when the walk meets
     an entry that is not an address, or finds only trusted peers, the header rule applies;
   - else the ``CF-Connecting-IP`` value is the client (source ``header``). A list
     (``a, b``) gives its **last** element, as nginx's ``real_ip_header`` does with
     ``real_ip_recursive off``: cfban and nginx's ``$remote_addr`` then agree. Cloudflare
     itself sends exactly one address, so a list means a proxy in between appended one;
   - a missing (``-``) or unparseable value falls back to the peer (source ``peer``), with
     a warning that says why; the guards then refuse to ban a Cloudflare edge or a proxy.
3. The peer is not trusted: the request bypassed Cloudflare, every forwarded header is
   attacker-controlled and ignored, the client is the peer (source ``direct``), and
   ``direct_origin_access`` is set so the caller can warn that the origin is reachable
   without Cloudflare.

Addresses come back normalised (IPv4-mapped IPv6 as IPv4, canonical IPv6 text).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cfban.realip._netset import Address, NetworkSet, parse_address
from cfban.realip._ranges import CloudflareRanges

if TYPE_CHECKING:
    from cfban.config import Settings

__all__ = ["Resolution", "Resolver"]

LOGGED = "logged"
HEADER = "header"
XFF = "x-forwarded-for"
PEER = "peer"
DIRECT = "direct"
NONE = "none"

_ABSENT = ("", "-")
_SNIPPET_HINT = "lock the origin to Cloudflare (see `cfban nginx-snippet`)"


@dataclass(frozen=True)
class Resolution:
    """The decision for one line.

    ``client`` is the address to hold responsible (``None`` when there is none), ``source``
    one of ``logged``, ``header``, ``x-forwarded-for``, ``peer``, ``direct``, ``none``;
    ``warning`` is a sentence for the operator when something is off.
    """

    client: str | None
    source: str
    warning: str | None = None
    direct_origin_access: bool = False

    @property
    def warning_key(self) -> str | None:
        """A key to report a warning once by: source and client, not the header's text, so
        a client sending a new forged header on every request cannot flood the log."""
        if self.warning is None:
            return None
        return f"{self.source}:{self.client}"


def _group(groups: Mapping[str, str | None], name: str) -> str | None:
    value = groups.get(name)
    if value is None:
        value = groups.get(name.upper())
    return value


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


class Resolver:
    """Decides the client address of a log line; see the module docstring for the rules."""

    def __init__(
        self,
        trusted: NetworkSet,
        *,
        header: str = "CF-Connecting-IP",
        use_x_forwarded_for: bool = False,
    ) -> None:
        self.trusted = trusted
        self.header = header
        self.use_x_forwarded_for = use_x_forwarded_for

    @classmethod
    def from_settings(cls, settings: Settings, ranges: CloudflareRanges) -> Resolver:
        """A resolver trusting Cloudflare's ``ranges`` plus ``[realip] trusted_proxies``."""
        trusted = NetworkSet([*ranges.networks.networks, *settings.realip.trusted_proxies])
        return cls(
            trusted,
            header=settings.realip.header,
            use_x_forwarded_for=settings.realip.use_x_forwarded_for,
        )

    def is_trusted(self, address: Address | str) -> bool:
        """Whether ``address`` is a trusted peer (Cloudflare or a configured proxy)."""
        return self.trusted.contains(address)

    def resolve(self, host: str | None, groups: Mapping[str, str | None]) -> Resolution:
        """The client of one line, from the logged ``host`` and the filter's named ``groups``.

        Never raises: what cannot be decided gives ``client=None`` with a warning.
        """
        peer_text = _group(groups, "peer")
        if peer_text is None or peer_text.strip() in _ABSENT:
            return self._logged(host, None)
        peer = parse_address(peer_text)
        if peer is None:
            return self._logged(
                host,
                f"the logged peer {_shown(peer_text)} is not an address; "
                "using the address nginx logged",
            )
        if not self.trusted.contains(peer):
            return self._direct(peer, host, groups)
        if self.use_x_forwarded_for:
            found = self._walk_xff(_group(groups, "xff"))
            if found is not None:
                return Resolution(str(found), XFF)
        value = _group(groups, "cfip")
        if value is None or value.strip() in _ABSENT:
            return Resolution(
                str(peer),
                PEER,
                f"the request from trusted peer {peer} carried no {self.header} header; "
                "using the peer itself",
            )
        last = value.rsplit(",", 1)[-1]
        client = parse_address(last)
        if client is None:
            return Resolution(
                str(peer),
                PEER,
                f"the {self.header} header from trusted peer {peer} is not an address "
                f"({_shown(value)}); using the peer itself",
            )
        return Resolution(str(client), HEADER)

    def _logged(self, host: str | None, note: str | None) -> Resolution:
        client = parse_address(host)
        if client is None:
            shown = _shown(host) if host is not None else "nothing"
            return Resolution(None, NONE, f"the logged address {shown} is not an IP address")
        return Resolution(str(client), LOGGED, note)

    def _direct(
        self, peer: Address, host: str | None, groups: Mapping[str, str | None]
    ) -> Resolution:
        parts = [
            f"the request from {peer} did not come through Cloudflare ({peer} is neither in "
            "Cloudflare's ranges nor in [realip] trusted_proxies), so the origin is reachable "
            f"without Cloudflare; {_SNIPPET_HINT}"
        ]
        value = _group(groups, "cfip")
        if value is not None and value.strip() not in _ABSENT:
            parts.append(f"its {self.header} header {_shown(value)} was ignored (forgeable)")
        logged = parse_address(host)
        if logged is not None and logged != peer:
            parts.append(
                f"nginx believed the header and logged {logged}: if {peer} is your own proxy, "
                "add it to [realip] trusted_proxies"
            )
        return Resolution(str(peer), DIRECT, "; ".join(parts), direct_origin_access=True)

    def _walk_xff(self, value: str | None) -> Address | None:
        if value is None or value.strip() in _ABSENT:
            return None
        for item in reversed(value.split(",")):
            address = parse_address(item)
            if address is None:
                return None
            if not self.trusted.contains(address):
                return address
        return None
