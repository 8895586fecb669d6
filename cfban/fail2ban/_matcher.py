"""The per-line pipeline of fail2ban: date cut, prefregex, failregex, ignoreregex, failure id.

:class:`Filter` is the compiled filter. ``Filter.match(line)`` is pure: one line in, at most
one :class:`Failure` out (fail2ban-format.md §2.4). What needs memory across lines lives in a
:class:`LineMatcher`: the ``maxlines`` buffer with ``<SKIPLINES>``, the "line without a date
takes the last date if it is under 60 s old" rule (§3.6) and ``<F-MLFID>`` sessions (§2.7).

Lines longer than :data:`MAX_LINE_CHARS` (64 KiB) are cut to that length before matching, so
one hostile line cannot make a regex run for long; ``Filter.stats["truncated"]`` counts them.
"""

from __future__ import annotations

import functools
import ipaddress
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from cfban.clock import SystemClock
from cfban.fail2ban._dates import DateDetector
from cfban.fail2ban._model import DateMatch, Failure, FilterDefinition
from cfban.fail2ban._regex import CompiledFilter, CompiledRegex, compile_filter

MAX_LINE_CHARS = 64 * 1024
_LAST_DATE_MAX_AGE = 60.0
_MLFID_CACHE_SIZE = 100
_MLFID_CACHE_SECONDS = 300.0
_INTERNAL_KEYS = frozenset(
    {"matches", "nofail-matches", "users", "mlfpending", "mlfforget", "mlfgained", "content"}
)

_TupleLine = tuple[str, str, str]  # (text before the date, date text, text after the date)


class DateFinder(Protocol):
    """What the matcher needs from a date detector."""

    def find(self, line: str) -> DateMatch | None: ...


def decode_line(raw: bytes, encoding: str = "utf-8") -> str:
    """Text of one raw log line: bad bytes become U+FFFD, line ends and NUL padding go.

    NUL runs at either end (what ``copytruncate`` log rotation leaves) are removed; NULs inside
    the line become U+FFFD rather than vanishing, so that deleting them can never join two
    fragments into text a regex would match.
    """
    text = raw.decode(encoding, errors="replace").rstrip("\r\n").strip("\x00")
    return text.replace("\x00", "\ufffd")


@functools.lru_cache(maxsize=4096)  # the same few offenders repeat; parsing is the costly part
def normalize_host(text: str, cidr: str | None = None) -> str:
    """fail2ban's address form: compressed lower-case IPv6, IPv4-mapped IPv6 as IPv4.

    Brackets are stripped; a ``cidr`` narrower than the address gives a network
    (``192.0.2.0/24``). Text that is not an address is returned unchanged (a raw id).
    """
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


def _joined(lines: Iterable[_TupleLine]) -> str:
    return "\n".join(before + after for before, _, after in lines) + "\n"


def _original(line: _TupleLine) -> str:
    return "".join(line)


class Filter:
    """A compiled fail2ban filter.

    ``dates`` finds and parses the date of a line (by default a ``DateDetector`` for the
    definition's ``datepattern``); ``now`` gives the current epoch time (used for ``{NONE}``
    dates). ``stats`` counts lines the matcher had to treat specially (``truncated``).

    Raises:
        FilterError: a regex of ``definition`` does not compile or lacks a failure id.
    """

    def __init__(
        self,
        definition: FilterDefinition,
        *,
        dates: DateFinder | None = None,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.definition = definition
        self.compiled: CompiledFilter = compile_filter(definition)
        self.now: Callable[[], float] = now or SystemClock().now
        if dates is None:
            dates = DateDetector(
                definition.datepattern, logtimezone=definition.logtimezone, now=self.now
            )
        self.dates = dates
        self.stats: Counter[str] = Counter()
        self._multiline = definition.maxlines > 1
        compiled = self.compiled
        self._precheck_ignore = (
            bool(compiled.ignoreregex) and len(compiled.ignoreregex) < len(compiled.failregex) - 2
        )

    @property
    def name(self) -> str:
        """The filter's name."""
        return self.definition.name

    def match(self, line: str) -> Failure | None:
        """The failure in ``line`` (one log line, without its line end), or ``None``.

        Pure: a line without a date gives ``time=None``; a ``<F-NOFAIL>`` match is no failure.
        Only the first matching failregex counts, as in fail2ban. The line is matched alone
        (no ``maxlines`` buffer, no ``<F-MLFID>`` session): use a :class:`LineMatcher` for those.
        """
        tline, epoch = self._split_date(self._cap(line))
        for failure in _Search(self, [tline], epoch, None, check_all=False).run():
            if failure.host is not None and "nofail" not in failure.groups:
                return failure
        return None

    def all_matches(self, line: str) -> list[Failure]:
        """Every failregex that matches ``line`` (fail2ban's ``checkAllRegex`` test mode).

        ``<F-NOFAIL>`` matches are included, with ``nofail`` in their groups.
        """
        tline, epoch = self._split_date(self._cap(line))
        return _Search(self, [tline], epoch, None, check_all=True).run()

    def _cap(self, line: str) -> str:
        line = line.rstrip("\r\n")
        if len(line) > MAX_LINE_CHARS:
            self.stats["truncated"] += 1
            return line[:MAX_LINE_CHARS]
        return line

    def _split_date(self, line: str) -> tuple[_TupleLine, float | None]:
        found = self.dates.find(line)
        if found is None:
            return ("", "", line), None
        text = line[found.start : found.end]
        if not text:
            return ("", "", line), self.now()
        return (line[: found.start], text, line[found.end :]), found.epoch


class LineMatcher:
    """The stateful side of a filter: feed lines in log order, get failures out.

    Holds the ``maxlines`` buffer, the last date seen (a line without a date takes it while it
    is under 60 s old) and the ``<F-MLFID>`` sessions (100 entries, 5 minutes).
    """

    def __init__(self, flt: Filter) -> None:
        self.filter = flt
        self.buffer: list[_TupleLine] = []
        self.last_date: float | None = None
        self.last_date_text = ""
        self.sessions: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def feed(
        self, line: str, *, known_time: float | None = None, check_all: bool = False
    ) -> list[Failure]:
        """The failures completed by ``line``.

        ``known_time`` skips date detection (a journal entry, whose time is known);
        ``check_all`` tries every failregex, as fail2ban's sample tests do, and also returns
        ``nofail`` matches and pending session matches (``host`` ``None``).
        """
        flt = self.filter
        line = flt._cap(line)
        now = flt.now()
        fresh = self.last_date is not None and self.last_date > now - _LAST_DATE_MAX_AGE
        epoch: float | None
        if known_time is not None:
            tline, epoch = ("", "", line), known_time
            self.last_date = known_time
        else:
            found = flt.dates.find(line)
            tline, epoch = ("", "", line), None
            if found is not None:
                text = line[found.start : found.end]
                if text:
                    tline = (line[: found.start], text, line[found.end :])
                    epoch = found.epoch
                    if epoch is not None:
                        self.last_date, self.last_date_text = epoch, text
                elif fresh:
                    tline, epoch = ("", self.last_date_text, line), self.last_date
                else:
                    epoch = now
            if epoch is None and fresh:
                tline, epoch = ("", self.last_date_text, line), self.last_date
        if flt._multiline:
            self.buffer.append(tline)
            self.buffer = self.buffer[-flt.definition.maxlines :]
            lines = self.buffer
        else:
            lines = [tline]
        found_failures = _Search(flt, lines, epoch, self, check_all=check_all).run()
        if check_all:
            return found_failures
        return [f for f in found_failures if f.host is not None and "nofail" not in f.groups]

    def session(self, mlfid: str) -> dict[str, Any] | None:
        """The cached groups of session ``mlfid``, if it is known and not expired."""
        entry = self.sessions.get(mlfid)
        if entry is None:
            return None
        if entry[0] <= self.filter.now():
            del self.sessions[mlfid]
            return None
        return entry[1]

    def remember(self, mlfid: str, groups: dict[str, Any]) -> None:
        """Start caching session ``mlfid``."""
        now = self.filter.now()
        while len(self.sessions) >= _MLFID_CACHE_SIZE:
            self.sessions.popitem(last=False)
        self.sessions[mlfid] = (now + _MLFID_CACHE_SECONDS, groups)


class _Search:
    """One run of the failregex loop over a buffer (fail2ban's ``findFailure``)."""

    def __init__(
        self,
        flt: Filter,
        lines: list[_TupleLine],
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

    def _set_buffer(self, lines: list[_TupleLine]) -> None:
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

    def _split(self, found: Any, regex: CompiledRegex) -> tuple[list[_TupleLine], list[_TupleLine]]:
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
        self, index: int, groups: dict[str, Any], matched: list[_TupleLine]
    ) -> Failure | None:
        mlfid = groups.get("mlfid")
        if mlfid is not None and self.state is not None:
            groups = _merge_session(self.state, mlfid, groups, matched)
            if groups.get("nofail") and not self.check_all:
                return None
        else:
            groups["matches"] = list(groups.get("matches", [])) + list(matched)
        host = _failure_host(groups, self.flt.definition.usedns)
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


def _failure_host(groups: dict[str, Any], usedns: str) -> str | None:
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
    state: LineMatcher, mlfid: str, fail: dict[str, Any], matched: list[_TupleLine]
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
    out = {k: v for k, v in groups.items() if isinstance(v, str) and k not in _INTERNAL_KEYS}
    if groups.get("nofail"):
        out["nofail"] = str(groups["nofail"])
    users = groups.get("users")
    if users:
        out["users"] = "\n".join(sorted(users))
    lines = tuple(_original(line) for line in groups.get("matches", []))
    return Failure(host=host, time=epoch, groups=out, lines=lines, regex_index=index)
