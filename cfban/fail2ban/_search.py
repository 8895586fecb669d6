"""One run of fail2ban's failregex loop over a buffer, and the failure it gives.

The second half of the per-line pipeline (fail2ban-format.md §2.4 steps 4-8, §2.7): the
ignoreregex pre-check, prefregex and ``<F-CONTENT>``, the failregexes in order with the
ignoreregex post-check, the failure id, and ``<F-MLFID>`` session merging. ``_filter`` does the
first half (line cut, date, prefilter); ``_matcher`` keeps the state between lines.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cfban.fail2ban._model import Failure
from cfban.fail2ban._regex import CompiledRegex

if TYPE_CHECKING:
    from cfban.fail2ban._filter import Filter
    from cfban.fail2ban._matcher import LineMatcher

INTERNAL_KEYS = frozenset(
    {"matches", "nofail-matches", "users", "mlfpending", "mlfforget", "mlfgained", "content"}
)

TupleLine = tuple[str, str, str]  # (text before the date, date text, text after the date)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: Dotted-quad IPv4 as ``str(ipaddress.IPv4Address)`` writes it (no leading zeros).
_PLAIN_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}", re.ASCII)


@functools.lru_cache(maxsize=1 << 16)  # offenders repeat; parsing is the costly part
def normalize_host(text: str, cidr: str | None = None) -> str:
    """fail2ban's address form: compressed lower-case IPv6, IPv4-mapped IPv6 as IPv4.

    Brackets are stripped; a ``cidr`` narrower than the address gives a network
    (``192.0.2.0/24``). Text that is not an address is returned unchanged (a raw id).
    """
    if cidr is None and _PLAIN_IPV4.fullmatch(text):
        return text  # already in ipaddress's form: no parse needed
    raw = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if cidr and cidr.isdigit() and int(cidr) < address.max_prefixlen:
        return str(ipaddress.ip_network(f"{address}/{cidr}", strict=False))
    return str(address)


def _joined(lines: Iterable[TupleLine]) -> str:
    return "\n".join(before + after for before, _, after in lines) + "\n"


def _original(line: TupleLine) -> str:
    return "".join(line)


class Search:
    """One run of the failregex loop over a buffer (fail2ban's ``findFailure``)."""

    def __init__(
        self,
        flt: Filter,
        lines: list[TupleLine],
        epoch: float | None,
        state: LineMatcher | None,
        *,
        check_all: bool,
    ) -> None:
        self.flt = flt
        self.org = list(lines)
        self.epoch = epoch
        self.state = state
        self.check_all = check_all
        self.multiline = flt._multiline and state is not None

    def _set_buffer(self, lines: list[TupleLine]) -> None:
        if self.state is not None and self.flt._multiline:
            self.state.buffer = lines

    def run(self) -> list[Failure]:
        compiled = self.flt.compiled
        buf = _joined(self.org)
        if self.flt._precheck_ignore and _any_search(compiled.ignoreregex, buf):
            return []
        pre_groups: dict[str, Any] = {}
        current = self.org
        if compiled.prefregex is not None:
            pref = compiled.prefregex.pattern.search(buf)
            if pref is None:
                return []
            pre_groups = compiled.prefregex.groups(pref)
            content = pre_groups.pop("content", None)
            if content:
                current = [("", "", content)]
                buf = content + "\n"
                self._set_buffer(current)  # as in fail2ban, the kept buffer is narrowed too
        failures: list[Failure] = []
        text: str | None = buf
        for index, regex in enumerate(compiled.failregex):
            if text is None:
                text = _joined(current)
            found = regex.pattern.search(text)
            if found is None:
                continue
            matched, unmatched = self._split(found, regex)
            if compiled.ignoreregex:
                ignore_text = _joined(matched) if self.multiline else text
                if _any_search(compiled.ignoreregex, ignore_text):
                    if self.multiline or not self.check_all:
                        self._set_buffer(unmatched)
                        current, text = unmatched, None
                    if not self.check_all:
                        break
                    continue
            if self.multiline or not self.check_all:
                self._set_buffer(unmatched)
                current, text = unmatched, None
            groups = dict(pre_groups)
            groups.update((k, v) for k, v in regex.groups(found).items() if v is not None)
            failure = self._failure(index, groups, matched)
            if failure is not None:
                failures.append(failure)
            if not self.check_all:
                break
        return failures

    def _split(self, found: Any, regex: CompiledRegex) -> tuple[list[TupleLine], list[TupleLine]]:
        """The original lines the match covers, and the lines that stay in the buffer."""
        org = self.org
        if len(org) <= 1:
            return org, []
        text: str = found.string
        first = text.rfind("\n", 0, found.start() + 1) + 1
        end = text.find("\n", found.end() - 1)
        last = len(text) if end < 0 else end + 1
        count1, count2 = text.count("\n", 0, first), text.count("\n", 0, last)
        matched, unmatched = org[count1:count2], org[:count1]
        if regex.has_skiplines:
            skipped = "".join(v or "" for k, v in found.groupdict().items() if k[:9] == "skiplines")
            n = 0
            for skipped_line in skipped.splitlines():
                for m, candidate in enumerate(matched[n:]):
                    if candidate[0] + candidate[2] == skipped_line:
                        unmatched.append(matched.pop(n + m))
                        n += m
                        break
        unmatched.extend(org[count2:])
        return matched, unmatched

    def _failure(
        self, index: int, groups: dict[str, Any], matched: list[TupleLine]
    ) -> Failure | None:
        mlfid = groups.get("mlfid")
        if mlfid is not None and self.state is not None:
            groups = _merge_session(self.state, mlfid, groups, matched)
            if groups.get("nofail") and not self.check_all:
                return None
        else:
            groups["matches"] = list(groups.get("matches", [])) + list(matched)
        host = failure_host(groups, self.flt.definition.usedns)
        if host is None:
            if mlfid is None:
                self.flt.stats["no failure id"] += 1
                return None
            groups["mlfpending"] = 1  # the session waits for its failure id
            if not self.check_all:
                return None
        return _to_failure(host, self.epoch, groups, index)


def _any_search(regexes: Iterable[CompiledRegex], text: str) -> bool:
    return any(regex.pattern.search(text) is not None for regex in regexes)


def failure_host(groups: dict[str, Any], usedns: str) -> str | None:
    """The failure id (fail2ban-format.md §2.4 steps 6-8); ``fid`` wins when it differs.

    A ``dns`` capture is never resolved here: with ``usedns = no`` a name is no failure, with
    ``raw``/``yes``/``warn`` the name itself is the id (resolving it is the caller's choice).
    With ``raw`` ids are taken as written; otherwise an id that is an address is normalised.
    """
    fid = groups.get("fid")
    cidr = groups.get("cidr")
    address = groups.get("ip4") or groups.get("ip6")
    if address is not None:
        host = normalize_host(address, cidr)
    elif groups.get("dns") is not None:
        name: str = groups["dns"]
        host = normalize_host(name)
        if host == name and usedns == "no":
            try:
                ipaddress.ip_address(name)
            except ValueError:
                return None
    elif fid is not None:
        return normalize_host(fid) if usedns != "raw" else str(fid)
    else:
        return None
    if fid is None or fid == host or fid == address:
        return host
    groups["ip"] = host
    return normalize_host(fid) if usedns != "raw" else str(fid)


def _merge_session(
    state: LineMatcher, mlfid: str, fail: dict[str, Any], matched: list[TupleLine]
) -> dict[str, Any]:
    """Merge ``fail`` into the cached session ``mlfid`` (fail2ban's ``_mergeFailure``)."""
    flags = 0  # 1 nofail now, 2 forget, 4 session had nofail/gained, 8 gained
    if fail.get("mlfgained"):
        flags |= 8 | 1
        if not fail.get("nofail"):
            fail["nofail"] = fail["mlfgained"]
    elif fail.get("nofail"):
        flags |= 1
    if fail.pop("mlfforget", None):
        flags |= 2
    session = state.session(mlfid)
    users: set[str] | None = None
    if session is not None:
        users = _add_user(session, fail.get("user"))
        if session.pop("nofail", None):
            flags |= 4
        if session.pop("mlfgained", None):
            flags |= 4
        if flags & 8:
            session.pop("mlfpending", None)
        if not flags & 4 and not session.get("mlfpending", 0):
            session.pop("matches", None)
        session.update((k, v) for k, v in fail.items() if v is not None)
        fail = session
        if flags & 2:
            state.sessions.pop(mlfid, None)
    elif not flags & 2:
        users = _add_user(fail, fail.get("user"))
        state.remember(mlfid, fail)
    if fail.pop("mlfpending", 0) or (users and len(users) > 1):
        fail.pop("nofail", None)
        fail.pop("mlfgained", None)
        flags &= ~(8 | 1)
    if not flags & 1:
        merged = list(fail.pop("nofail-matches", [])) + list(fail.get("matches", []))
        if not flags & 8:
            merged += matched
        fail["matches"] = merged
    elif flags & 3 == 1:
        fail["nofail-matches"] = list(fail.get("nofail-matches", [])) + list(matched)
    return fail


def _add_user(groups: dict[str, Any], user: str | None) -> set[str] | None:
    users: set[str] | None = groups.get("users")
    if user:
        if not users:
            users = groups["users"] = set()
        users.add(user)
    return users


def _to_failure(
    host: str | None, epoch: float | None, groups: dict[str, Any], index: int
) -> Failure:
    out = {k: v for k, v in groups.items() if isinstance(v, str) and k not in INTERNAL_KEYS}
    if groups.get("nofail"):
        out["nofail"] = str(groups["nofail"])
    users = groups.get("users")
    if users:
        out["users"] = "\n".join(sorted(users))
    lines = tuple(_original(line) for line in groups.get("matches", []))
    return Failure(host=host, time=epoch, groups=out, lines=lines, regex_index=index)
