"""Regex tags (``<HOST>``, ``<F-USER>``, ...) expanded and compiled, as fail2ban's server does.

A :class:`FilterDefinition` still carries the regex tags; :func:`compile_filter` expands them
(spec: fail2ban-format.md §2.1-§2.3), rewrites inline global flags, compiles each regex and
checks the failure-id requirement. Compile problems become a :class:`FilterError` that names the
option (``failregex`` line N, ``ignoreregex`` line N, ``prefregex``), the filter, and the file
and line the regex came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cfban.errors import FilterError
from cfban.fail2ban._model import FilterDefinition, RegexSource

_IP4 = r"(?:::f{4,6}:)?(?P<ip4>(?:\d{1,3}\.){3}\d{1,3})"
_IP6 = r"(?P<ip6>(?:[0-9a-fA-F]{1,4}::?|:){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):))"
_DNS = r"(?P<dns>[\w\-.^_]*\w)"
_CIDR = r"(?P<cidr>\d+)"
_ADDR = rf"\[?(?:{_IP4}|{_IP6})\]?"
_HOST_DNS = rf"(?:{_ADDR}|{_DNS})"
_SUBNET = rf"\[?(?:{_IP4}|{_IP6})(?:/{_CIDR})?\]?"

#: Tags with a fixed expansion (the ``<F-X/>`` self-closing forms included).
STATIC_TAGS: dict[str, str] = {
    "IP4": _IP4,
    "F-IP4/": _IP4,
    "IP6": _IP6,
    "F-IP6/": _IP6,
    "ADDR": _ADDR,
    "F-ADDR/": _ADDR,
    "CIDR": _CIDR,
    "F-CIDR/": _CIDR,
    "SUBNET": _SUBNET,
    "F-SUBNET/": _SUBNET,
    "DNS": _DNS,
    "F-DNS/": _DNS,
    "F-ID/": r"(?P<fid>\S+)",
    "F-PORT/": r"(?P<fport>\w+)",
}

#: The groups that identify a failure; a failregex (or the prefregex) needs one of them.
FAILURE_ID_GROUPS = ("fid", "ip4", "ip6", "dns", "mlfid")

_TAG_RE = re.compile(r"</?[\w\-]+/?>")
_CUSTOM_TAG_RE = re.compile(r"^(/?)F-([A-Z0-9_\-]+)$")
_GROUP_ALIASES = {"id": "fid", "port": "fport"}
# ((?i)abc) and (?:(?i)abc) become (?i:abc); not preceded by a backslash.
_GLOBAL_FLAG_IN_GROUP = re.compile(r"(?<!\\)\((?:\?:)?(\(\?[a-z]+)\)")
_ALT_NAME_RE = re.compile(r"^alt_(.*?)(?:_\d+)?$")


def _group_name(tag_name: str) -> str:
    lowered = tag_name.lower()
    return _GROUP_ALIASES.get(lowered, lowered)


def expand_tags(regex: str, *, usedns: str = "no") -> str:
    """``regex`` with fail2ban's regex tags replaced by their expansions (§2.1, §2.2).

    ``<HOST>`` is ``<ADDR>`` when ``usedns`` is ``no`` (cfban's default), otherwise it also
    accepts a host name. Unknown tags, lower-case ``<F-x>`` and closing tags that were never
    opened stay literal.
    """
    opened: set[str] = set()
    skiplines = 0

    def substitute(match: re.Match[str]) -> str:
        nonlocal skiplines
        tag = match.group()
        name = tag[1:-1]
        if name == "HOST":
            return _ADDR if usedns == "no" else _HOST_DNS
        if name == "SKIPLINES":
            index = skiplines
            skiplines += 1
            return rf"\n(?P<skiplines{index}>(?:(?:.*\n)*?))"
        static = STATIC_TAGS.get(name)
        if static is not None:
            return static
        custom = _CUSTOM_TAG_RE.match(name)
        if custom is None:
            return tag
        closing, tag_name = custom.groups()
        if closing:
            return ")" if tag_name in opened else tag
        opened.add(tag_name)
        return f"(?P<{_group_name(tag_name)}>"

    return _TAG_RE.sub(substitute, regex)


def rewrite_inline_flags(regex: str) -> str:
    """Turn a global flag at the start of a group into a scoped one: ``((?i)x)`` -> ``(?i:x)``."""
    return _GLOBAL_FLAG_IN_GROUP.sub(r"\1:", regex)


@dataclass(frozen=True)
class CompiledRegex:
    """One expanded, compiled regex with its origin.

    ``alt_names`` maps each ``alt_*`` group (sorted) to the group it stands in for
    (``alt_user1`` -> ``user``).
    """

    source: RegexSource
    pattern: re.Pattern[str]
    alt_names: tuple[tuple[str, str], ...] = ()

    @property
    def has_failure_id(self) -> bool:
        """Whether the regex captures one of :data:`FAILURE_ID_GROUPS`."""
        return any(group in self.pattern.groupindex for group in FAILURE_ID_GROUPS)

    @property
    def has_skiplines(self) -> bool:
        """Whether the regex uses ``<SKIPLINES>``."""
        return "skiplines0" in self.pattern.groupindex

    def groups(self, match: re.Match[str]) -> dict[str, str | None]:
        """The named groups of ``match``, with ``alt_*`` values filling an empty target."""
        found: dict[str, str | None] = match.groupdict()
        for alt, target in self.alt_names:
            value = found.get(alt)
            if value and not found.get(target):
                found[target] = value
        return found


@dataclass(frozen=True)
class CompiledFilter:
    """All regexes of a filter, compiled in the definition's order."""

    failregex: tuple[CompiledRegex, ...]
    ignoreregex: tuple[CompiledRegex, ...]
    prefregex: CompiledRegex | None


def _describe(source: RegexSource, index: int | None) -> str:
    if index is None:
        return source.option
    return f"{source.option} line {index + 1}"


def compile_regex(
    source: RegexSource,
    *,
    filter_name: str,
    index: int | None = None,
    multiline: bool = False,
    usedns: str = "no",
) -> CompiledRegex:
    """Expand and compile one regex.

    ``index`` is its position among the option's regexes (for the error message).

    Raises:
        FilterError: the regex is empty or does not compile.
    """
    where = f"{_describe(source, index)} of filter {filter_name!r}"
    expanded = expand_tags(source.text, usedns=usedns)
    if not expanded.strip():
        raise FilterError(
            f"{where} is empty",
            path=source.path,
            line=source.line,
            hint="remove the empty regex or write one",
        )
    expanded = rewrite_inline_flags(expanded)
    try:
        pattern = re.compile(expanded, re.MULTILINE if multiline else 0)
    except re.error as error:
        raise FilterError(
            f"{where} does not compile: {error}: {source.text!r}",
            path=source.path,
            line=source.line,
            hint="fix the regex (Python re syntax; each <HOST>/<F-...> tag may appear once)",
        ) from error
    alt_names = []
    for group in pattern.groupindex:
        alt = _ALT_NAME_RE.match(group)
        if alt is not None:
            alt_names.append((group, _group_name(alt.group(1))))
    return CompiledRegex(source=source, pattern=pattern, alt_names=tuple(sorted(alt_names)))


def compile_filter(definition: FilterDefinition) -> CompiledFilter:
    """Compile every regex of ``definition`` and check the failure-id requirement.

    Failregexes compile with ``re.MULTILINE`` only when ``maxlines > 1``; ignoreregexes never.

    Raises:
        FilterError: a regex does not compile, there is no failregex, or a failregex has no
            failure-id group (``<HOST>``, ``<ADDR>``, ``<F-ID>``, ...) and neither has the
            prefregex.
    """
    name = definition.name
    usedns = definition.usedns
    multiline = definition.maxlines > 1
    prefregex = None
    if definition.prefregex is not None and definition.prefregex.text.strip():
        prefregex = compile_regex(
            definition.prefregex, filter_name=name, multiline=multiline, usedns=usedns
        )
    failregex = tuple(
        compile_regex(src, filter_name=name, index=i, multiline=multiline, usedns=usedns)
        for i, src in enumerate(definition.failregex)
    )
    ignoreregex = tuple(
        compile_regex(src, filter_name=name, index=i, usedns=usedns)
        for i, src in enumerate(definition.ignoreregex)
    )
    if not failregex:
        files = ", ".join(definition.files) or "its files"
        raise FilterError(
            f"filter {name!r} has no failregex",
            hint=f"add a failregex to the [Definition] section of {files}",
        )
    prefix_has_id = prefregex is not None and prefregex.has_failure_id
    for i, compiled in enumerate(failregex):
        if not (compiled.has_failure_id or prefix_has_id):
            raise FilterError(
                f"{_describe(compiled.source, i)} of filter {name!r} has no failure-id group: "
                f"{compiled.source.text!r}",
                path=compiled.source.path,
                line=compiled.source.line,
                hint="capture the offender with <HOST>, <ADDR>, <IP4>, <IP6> or <F-ID>...</F-ID>",
            )
    return CompiledFilter(failregex=failregex, ignoreregex=ignoreregex, prefregex=prefregex)
