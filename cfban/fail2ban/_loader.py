"""Filter spec -> files -> :class:`FilterDefinition`, as fail2ban's client builds a filter.

Steps: find the filter's files (``N.conf``, ``N.d/*.conf``, ``N.local``, ``N.d/*.local``, each
expanded with includes and ``.local`` siblings); read ``[Definition]`` options with ``%(...)s``
interpolation; combine ``[Definition]`` < ``[Init]`` < spec options < jail options; then
substitute ``<tag>`` references recursively (:func:`substitute_tags`). Tags nobody defines,
such as ``<HOST>`` or ``<F-USER>``, stay in the text for the regex compiler.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

from cfban._lazylog import debug_logger, logger
from cfban.errors import FilterError
from cfban.fail2ban._ini import (
    DEFAULT,
    MAX_VALUE_LENGTH,
    IniFile,
    MergedConfig,
    RawValue,
    expand_includes,
)
from cfban.fail2ban._model import FilterDefinition, RegexSource
from cfban.fail2ban._options import parse_filter_spec

__all__ = ["FILTER_OPTIONS", "MAX_TAG_REPLACE_COUNT", "load_definition", "substitute_tags"]


#: The ``[Definition]`` options fail2ban hands to its server (others are free variables).
FILTER_OPTIONS = (
    "usedns",
    "prefregex",
    "ignoreregex",
    "failregex",
    "maxlines",
    "datepattern",
    "journalmatch",
)
#: How often one tag may be replaced inside one option before it counts as a loop.
MAX_TAG_REPLACE_COUNT = 25
_MAX_VALUE_LENGTH = MAX_VALUE_LENGTH

_TAG_RE = re.compile(r"<([^ <>]+)>")
_SECTION_TAG_RE = re.compile(r"([\w\-]+)/([^\s>]+)")
_CONDITIONAL_RE = re.compile(r"(\w+)(\?.+)")
_JAIL_KNOWN_RE = re.compile(r"%\(known/([^)]+)\)s")


def load_definition(
    spec: str,
    *,
    search_path: Sequence[Path],
    jail_options: Mapping[str, str] | None = None,
) -> FilterDefinition:
    """Read the filter named by ``spec`` and resolve it as fail2ban's client would.

    ``spec`` is a filter name looked up in ``search_path`` (``<dir>/N.conf``, or
    ``<dir>/filter.d/N.conf`` when ``<dir>`` is a fail2ban config root) or a path to a
    ``.conf`` file, optionally followed by ``[opt=val, ...]``. ``jail_options`` override
    everything; a jail's ``failregex`` (etc.) replaces the filter's own, and may extend it
    by writing ``%(known/failregex)s``, as in a fail2ban jail.

    Raises:
        FilterError: the spec is invalid, the filter is not found, a file is broken (with
            its path and line), or interpolation fails.
    """
    name, spec_options = parse_filter_spec(spec)
    base = _find_filter(name, search_path)
    candidates = [base + ".conf", *sorted(glob.glob(glob.escape(base + ".d") + "/*.conf"))]
    candidates += [base + ".local", *sorted(glob.glob(glob.escape(base + ".d") + "/*.local"))]
    cache: dict[str, IniFile] = {}
    paths = expand_includes([p for p in candidates if os.path.exists(p)], cache)
    config = MergedConfig([cache[p] for p in paths])
    debug = debug_logger(__name__)
    if debug is not None:
        debug.debug("filter %s: files %s", spec, paths)
    jail = {k.lower(): v for k, v in (jail_options or {}).items()}
    resolver = _Resolver(config, spec_options)
    known = resolver.first_pass()
    for key, value in jail.items():
        if _JAIL_KNOWN_RE.search(value):
            jail[key] = _JAIL_KNOWN_RE.sub(partial(_known_for_jail, known=known, key=key), value)
    return resolver.definition(os.path.basename(base), jail)


def _known_for_jail(match: re.Match[str], *, known: Mapping[str, str], key: str) -> str:
    option = match.group(1).lower()
    if option not in known:
        raise FilterError(
            f"jail option {key!r} refers to %(known/{option})s, which the filter does not set"
        )
    return known[option]


def _find_filter(name: str, search_path: Sequence[Path]) -> str:
    """The base path (without ``.conf``) of the filter ``name``."""
    stem, extension = os.path.splitext(name)
    has_extension = extension in (".conf", ".local")
    if "/" in name or os.sep in name or has_extension:
        base = os.path.normpath(stem if has_extension else name)
        if os.path.isfile(base + ".conf") or os.path.isfile(base + ".local"):
            return base
        if "/" in name or os.sep in name:
            raise FilterError(f"filter file not found: {name}", hint="check the path")
        name = stem
    looked: list[str] = []
    for directory in search_path:
        for where in (directory, directory / "filter.d"):
            if where != directory and not where.is_dir():
                continue
            base = os.path.normpath(os.path.join(where, name))
            looked.append(str(where))
            if os.path.isfile(base + ".conf") or os.path.isfile(base + ".local"):
                return base
    raise FilterError(
        f"filter {name!r} not found; looked for {name}.conf in: {', '.join(looked) or '(nothing)'}",
        hint="check the filter name, or give the path to its .conf file",
    )


class _Resolver:
    """Resolves a merged config with spec and jail options, in fail2ban's two passes.

    fail2ban's client reads a filter twice. The first pass sees only the spec's options: the
    filter options are interpolated with them, every other ``[Definition]`` option without
    them; its result is what a jail's ``%(known/...)s`` means, and its errors are fatal. The
    second pass also sees ``[Init]`` and the jail, and gives the final values; there the
    other ``[Definition]`` options are only read when a tag asks for them. A tag found in no
    option is looked up in ``[Definition]`` with the values of the pass that first asks,
    and that answer is reused (fail2ban caches it too).
    """

    def __init__(self, config: MergedConfig, spec_options: Mapping[str, str]) -> None:
        self.config = config
        self.spec = {k.lower(): v for k, v in spec_options.items()}
        self.first_variables = dict(self.spec)
        if not self.spec.get("logtype") and "logtype" not in config.own_options("Definition"):
            self.first_variables["logtype"] = "file"
        self.init = dict(self.first_variables)
        for option in config.own_options("Init"):
            if option.startswith("known/"):
                continue
            value = config.get("Init", option) or ""
            self.init["known/" + option] = value
            self.init.setdefault(option, value)
        self.jail: dict[str, str] = {}
        self.variables: dict[str, str] = self.first_variables
        self.first_result: dict[str, str] = {}
        self._tag_cache: dict[str, str | None] = {}

    def first_pass(self) -> dict[str, str]:
        """The options as fail2ban's first pass resolves them (what ``known/`` refers to)."""
        try:
            options = self._definition_options(self.first_variables, first=True)
        except FilterError as error:
            missing = re.search(r"%\((.+?)\)s is not defined", error.message)
            if missing is None or missing.group(1).lower() not in self.init:
                raise
            raise FilterError(
                error.message,
                path=error.path,
                line=error.line,
                hint="fail2ban reads [Definition] once without [Init] values, and options "
                "other than failregex & co. without filter-spec values too: refer to those "
                "as <name>, not %(name)s",
            ) from None
        self.first_result = self._substitute({**options, **self.init})
        return self.first_result

    def _definition_options(self, variables: Mapping[str, str], *, first: bool) -> dict[str, str]:
        """``[Definition]`` interpolated: the filter options (possibly from ``DEFAULT``) with
        ``variables`` unless those replace them; in the first pass also every other own
        option, without ``variables``."""
        result: dict[str, str] = {}
        for option in FILTER_OPTIONS:
            if option not in variables:
                value = self.config.get("Definition", option, variables=variables)
                if value is not None:
                    result[option] = value
        if first:
            for option in self.config.own_options("Definition"):
                if option not in result:
                    result[option] = self.config.get("Definition", option) or ""
        return result

    def _substitute(self, combined: dict[str, str]) -> dict[str, str]:
        ignore = {m.group(1) for k in combined if (m := _CONDITIONAL_RE.fullmatch(k))}
        try:
            return substitute_tags(combined, ignore=ignore, lookup=self.lookup_tag)
        except _TagLoopError as error:
            raw = self.source(error.option)
            if raw is None:
                raise
            raise FilterError(
                error.message, path=raw.path, line=raw.line, hint=error.hint
            ) from None

    def lookup_tag(self, tag: str) -> str | None:
        """fail2ban's fallback for a tag not in the option dict (``get_ex`` on Definition)."""
        if tag in self._tag_cache:
            return self._tag_cache[tag]
        value: str | None = None
        qualified = _SECTION_TAG_RE.fullmatch(tag) if "/" in tag else None
        if qualified:
            section, option = qualified.group(1), qualified.group(2).lower()
            if section.lower() == "known":
                found = self.config.known_tag("Definition", option)
                if found is not None:
                    value = self.config.get(found[1], option, raw=found[0])
            elif section.lower() == "default":
                value = self.config.get(DEFAULT, option)
            elif self.config.has_section(section):
                value = self.config.get(section, option)
        if value is None:
            value = self.config.get("Definition", tag.lower(), variables=self.variables)
        self._tag_cache[tag] = value
        return value

    def source(self, option: str) -> RawValue | None:
        if option in self.jail or option in self.spec:
            return None
        return self.config.raw("Definition", option)

    def definition(self, name: str, jail: Mapping[str, str]) -> FilterDefinition:
        """The second pass, with the jail's options on top, as a definition.

        ``options`` holds the final values, plus the other ``[Definition]`` variables as
        the first pass resolved them (fail2ban's server never sees those; ``logtimezone``
        set there is honoured, as a jail would set it).
        """
        self.jail = dict(jail)
        self.variables = {**self.init, **self.jail}
        options = self._definition_options(self.variables, first=False)
        options = self._substitute({**options, **self.init, **self.jail})
        every = {**self.first_result, **options}
        prefregex = self._regexes(options, "prefregex", split=False)
        return FilterDefinition(
            name=name,
            failregex=self._regexes(options, "failregex"),
            ignoreregex=self._regexes(options, "ignoreregex"),
            prefregex=prefregex[0] if prefregex else None,
            datepattern=options.get("datepattern") or None,
            maxlines=self._maxlines(options),
            usedns=self._usedns(options),
            logtimezone=every.get("logtimezone") or None,
            files=tuple(self.config.files),
            options=every,
        )

    def _usedns(self, options: Mapping[str, str]) -> str:
        value = (options.get("usedns") or "no").lower()
        if value not in ("yes", "warn", "no", "raw"):
            logger(__name__).warning("usedns %r is not yes, warn, no or raw; using no", value)
            return "no"
        return value

    def _maxlines(self, options: Mapping[str, str]) -> int:
        text = options.get("maxlines", "").strip()
        if not text:
            return 1
        try:
            maxlines = int(text)
        except ValueError:
            maxlines = 0
        if maxlines < 1:
            raw = self.source("maxlines")
            raise FilterError(
                f"maxlines must be a whole number of at least 1, not {text!r}",
                path=raw.path if raw else None,
                line=raw.line if raw else None,
                hint="maxlines is how many log lines one failregex may span, e.g. 2",
            )
        return maxlines

    def _regexes(
        self, options: Mapping[str, str], option: str, *, split: bool = True
    ) -> tuple[RegexSource, ...]:
        """The non-empty lines of ``option``, each with the best location known.

        Lines are kept verbatim, as fail2ban sends them: the INI reader already stripped
        every written line, and whitespace a ``<tag>`` brings in is part of the regex.
        Unsplit (``prefregex``), the value is kept whole.
        """
        value = options.get(option, "")
        lines = [line for line in (value.split("\n") if split else [value]) if line]
        raw = self.source(option)
        if raw is None:
            return tuple(RegexSource(text, option) for text in lines)
        # A line-per-line location when the written lines map one-to-one onto the result.
        numbers = [number for number, text in raw.lines if text.strip()]
        if not split or len(numbers) != len(lines) or "known/" in raw.text:
            numbers = [raw.line] * len(lines)
        return tuple(
            RegexSource(text, option, raw.path, number)
            for text, number in zip(lines, numbers, strict=True)
        )


def substitute_tags(
    options: Mapping[str, str],
    *,
    ignore: set[str] | frozenset[str] = frozenset(),
    lookup: Callable[[str], str | None] | None = None,
) -> dict[str, str]:
    """Replace ``<tag>`` references in every value, recursively, as fail2ban does.

    A tag is looked up in ``options`` (current values), then through ``lookup``; unknown
    tags stay verbatim. Passes repeat until nothing changes, so ``<mdre-<mode>>`` works.

    Raises:
        FilterError: an option refers to itself, or one tag is replaced more than
            :data:`MAX_TAG_REPLACE_COUNT` times in one option (a loop). The
            error (``option``) names the option, for the caller to turn into a location.
    """
    tags = dict(options)
    done: set[str] = set()
    counts: dict[str, dict[str, int]] = {}
    while True:
        repeat = False
        for tag in list(tags):
            if tag in ignore or tag in done:
                continue
            value = original = tags[tag]
            replaced = counts.get(tag, {})
            found = _TAG_RE.search(value)
            while found:
                ref = found.group(1)
                if ref in ignore:
                    found = _TAG_RE.search(value, found.end())
                    continue
                if ref == tag or replaced.get(ref, 1) > MAX_TAG_REPLACE_COUNT:
                    raise _TagLoopError(tag, ref, value)
                replacement = tags.get(ref)
                if replacement is None and lookup is not None:
                    replacement = lookup(ref)
                if replacement is None:
                    found = _TAG_RE.search(value, found.end())
                    continue
                marker = f"<{ref}>"
                grown = len(value) + value.count(marker) * (len(replacement) - len(marker))
                if grown > _MAX_VALUE_LENGTH:
                    raise _TagLoopError(tag, ref, value[:200], grown)
                value = value.replace(marker, replacement)
                replaced[ref] = replaced.get(ref, 0) + 1
                found = _TAG_RE.search(value, found.start())
            if value != original:
                if _TAG_RE.search(value):
                    counts[tag] = replaced
                    repeat = True
                tags[tag] = value
            if "<" not in value:
                done.add(tag)
        if not repeat:
            return tags


class _TagLoopError(FilterError):
    def __init__(self, tag: str, ref: str, value: str, size: int | None = None) -> None:
        if size is None:
            message = f"option {tag!r} refers to itself through <{ref}> and cannot be resolved"
        else:
            message = f"option {tag!r} would grow to {size} characters through <{ref}>"
        super().__init__(
            f"{message} (value so far: {value[:120]!r})",
            hint="break the loop between the options' <tag> references",
        )
        self.option = tag
