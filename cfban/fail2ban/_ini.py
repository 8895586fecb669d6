"""fail2ban's INI dialect: parse, include, merge, and ``%(...)s``-interpolate filter files.

The rules follow Python's ``configparser`` as fail2ban configures it, written out here so that
every option remembers the file and line it came from:

* sections are case-sensitive, option names lower-cased; ``=`` or ``:`` separates name and
  value; a section or option set twice in one file is an error;
* a value continues on lines indented deeper than its option line; each line is stripped;
  blank lines inside a value are kept, trailing ones dropped;
* ``#`` and ``;`` start full-line comments (indented too, dropped inside values); an inline
  comment is only ``;`` preceded by whitespace, never ``#``;
* ``[INCLUDES] before``/``after`` name one file per line, relative to the including file;
  every file read gets its ``.local`` sibling right after it (:func:`expand_includes`);
* later files override earlier ones; an overridden value stays reachable as ``known/opt``;
* ``%(opt)s``, ``%(__name__)s``, ``%(section/opt)s``, ``%(default/opt)s``, ``%(known/opt)s``
  and ``%%`` are interpolated when a value is read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cfban.errors import FilterError

__all__ = [
    "IniFile",
    "MAX_INTERPOLATION_DEPTH",
    "MAX_VALUE_LENGTH",
    "MergedConfig",
    "RawValue",
    "expand_includes",
    "parse_ini",
    "read_ini",
]

#: Nesting limit of ``%(...)s`` references, as in Python's configparser.
MAX_INTERPOLATION_DEPTH = 10
#: Longest value interpolation may build (a guard against exponential references).
MAX_VALUE_LENGTH = 1_000_000
DEFAULT = "DEFAULT"
KNOWN_PREFIX = "KNOWN/"

_SECTION_RE = re.compile(r"\[(?P<header>.+)\]")
_OPTION_RE = re.compile(r"(?P<option>.*?)\s*[=:]\s*(?P<value>.*)$")
_CONDITIONAL_RE = re.compile(r"(\w+)(\?.+)")
_REFERENCE_RE = re.compile(r"%\(([^)]+)\)s")
_QUALIFIED_RE = re.compile(r"([\w\-]+)/(.+)")


@dataclass(frozen=True)
class RawValue:
    """An option's uninterpolated value and where it was written.

    ``lines`` pairs each line of the value with its line number (blank lines included).
    """

    text: str
    path: str
    line: int
    lines: tuple[tuple[int, str], ...] = ()


@dataclass
class IniFile:
    """One parsed file: its sections (``DEFAULT`` included) in the order written."""

    path: str
    sections: dict[str, dict[str, RawValue]] = field(default_factory=dict)


def parse_ini(text: str, path: str) -> IniFile:
    """Parse one file of fail2ban's INI dialect.

    Raises:
        FilterError: a line is neither section, option, continuation nor comment; an option
            comes before any section; a section or option is repeated in the file.
    """
    result = IniFile(path)
    section: dict[str, list[tuple[int, str]]] | None = None
    section_name = ""
    collected: dict[str, dict[str, list[tuple[int, str]]]] = {}
    option: str | None = None
    indent = 0
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    for number, line in enumerate(text.split("\n"), start=1):
        cut = _comment_start(line)
        value = line[:cut].strip()
        if not value:
            if cut is None and section is not None and option is not None:
                section[option].append((number, ""))
            continue
        line_indent = len(line) - len(line.lstrip())
        if section is not None and option is not None and line_indent > indent:
            section[option].append((number, value))
            continue
        indent = line_indent
        header = _SECTION_RE.match(value)
        if header:
            section_name = header.group("header")
            if section_name in collected and section_name != DEFAULT:
                raise FilterError(
                    f"section [{section_name}] appears twice in this file",
                    path=path,
                    line=number,
                    hint="merge the two sections into one",
                )
            section = collected.setdefault(section_name, {})
            option = None
            continue
        if section is None:
            raise FilterError(
                f"option line before any [section]: {value[:60]!r}",
                path=path,
                line=number,
                hint="start the file with a section header such as [Definition]",
            )
        match = _OPTION_RE.match(value)
        name = match.group("option").rstrip().lower() if match else ""
        if match is None or not name:
            raise FilterError(
                f"cannot parse line {value[:60]!r}",
                path=path,
                line=number,
                hint="expected 'name = value', '[section]', a comment (#, ;) or an indented "
                "continuation line",
            )
        if name in section:
            raise FilterError(
                f"option {name!r} is set twice in [{section_name}] "
                f"(first at line {section[name][0][0]})",
                path=path,
                line=number,
            )
        option = name
        section[name] = [(number, match.group("value").strip())]
    for sec_name, options in collected.items():
        for parts in options.values():
            while len(parts) > 1 and not parts[-1][1]:
                parts.pop()
        result.sections[sec_name] = {
            name: RawValue(
                "\n".join(text for _, text in parts).rstrip(), path, parts[0][0], tuple(parts)
            )
            for name, parts in options.items()
        }
    return result


def _comment_start(line: str) -> int | None:
    """Where a comment starts: full-line ``#``/``;``, or ``;`` after whitespace."""
    if line.strip().startswith(("#", ";")):
        return 0
    index = line.find(";")
    while index != -1:
        if index == 0 or line[index - 1].isspace():
            return index
        index = line.find(";", index + 1)
    return None


class MergedConfig:
    """Files merged in load order, read with fail2ban's ``%(...)s`` interpolation.

    Each option keeps its history: the value from every file that set it, oldest first.
    ``known/opt`` is the value before the last override (fail2ban's ``KNOWN/<section>``).
    """

    def __init__(self, files: list[IniFile] | None = None) -> None:
        self.defaults: dict[str, list[RawValue]] = {}
        self.sections: dict[str, dict[str, list[RawValue]]] = {}
        self._files_per_section: dict[str, int] = {}
        self.files: list[str] = []
        for ini in files or ():
            self.add(ini)

    def add(self, ini: IniFile) -> None:
        """Merge one more file over what was read so far."""
        self.files.append(ini.path)
        for name, options in ini.sections.items():
            if name == DEFAULT:
                for key, raw in options.items():
                    self.defaults.setdefault(key, []).append(raw)
                continue
            conditional = _CONDITIONAL_RE.fullmatch(name)
            if conditional:
                name, suffix = conditional.groups()
                options = {key + suffix: raw for key, raw in options.items()}
            self._files_per_section[name] = self._files_per_section.get(name, 0) + 1
            target = self.sections.setdefault(name, {})
            for key, raw in options.items():
                target.setdefault(key, []).append(raw)

    def has_section(self, section: str) -> bool:
        return section in self.sections

    def own_options(self, section: str) -> list[str]:
        """The option names set in ``section`` itself (not ``DEFAULT``), in first-set order."""
        return list(self.sections.get(section, {}))

    def _history(self, section: str, option: str) -> list[RawValue]:
        if section.startswith(KNOWN_PREFIX):
            # fail2ban's hidden KNOWN/<section>: the value before the last override, and it
            # exists only once the section was read from two files.
            real = section.removeprefix(KNOWN_PREFIX)
            if self._files_per_section.get(real, 0) < 2:
                return []
            return self.sections.get(real, {}).get(option, [])[:-1]
        return self.sections.get(section, {}).get(option, [])

    def raw(self, section: str, option: str) -> RawValue | None:
        """The latest raw value of ``option`` in ``section``, else in ``DEFAULT``."""
        history = self._history(section, option) or self.defaults.get(option)
        return history[-1] if history else None

    def known(self, section: str, option: str, index: int | None = None) -> RawValue | None:
        """``option`` as it was before the last file overrode it (else ``DEFAULT``'s).

        ``index`` picks an older value, for a ``known/`` inside a value reached that way.
        """
        history = [] if section.startswith(KNOWN_PREFIX) else self._history(section, option)
        position = len(history) - 2 if index is None else index
        if 0 <= position < len(history):
            return history[position]
        default = self.defaults.get(option)
        return default[-1] if default else None

    def known_tag(self, section: str, option: str) -> tuple[RawValue, str] | None:
        """What fail2ban's ``<known/opt>`` tag yields, and the section to interpolate it in.

        fail2ban reads it from ``KNOWN/<section>`` (falling back to ``DEFAULT`` there) when
        that section exists, else from ``section`` itself.
        """
        known_section = KNOWN_PREFIX + section
        if self._files_per_section.get(section, 0) >= 2:
            found = self.raw(known_section, option)
            if found is not None:
                return found, known_section
        found = self.raw(section, option)
        return (found, section) if found is not None else None

    def get(
        self,
        section: str,
        option: str,
        *,
        variables: Mapping[str, str] | None = None,
        raw: RawValue | None = None,
    ) -> str | None:
        """``option`` of ``section`` interpolated, or ``None`` if it is not set.

        ``variables`` take precedence over the section and ``DEFAULT`` (fail2ban's ``vars``).
        ``raw`` interpolates that value instead of looking ``option`` up.

        Raises:
            FilterError: a reference is missing, malformed, or nested too deeply.
        """
        variables = {k.lower(): v for k, v in (variables or {}).items()}
        interpolator = _Interpolator(self, section, variables)
        if raw is None:
            if option in variables:
                return interpolator.expand(variables[option], option, None, {})
            raw = self.raw(section, option)
            if raw is None:
                return None
        history = self.sections.get(section, {}).get(option, [])
        known_index = {option: history.index(raw) - 1} if raw in history else {}
        return interpolator.expand(raw.text, option, raw, known_index)


class _Interpolator:
    """Expands ``%(...)s`` in one value read from one section.

    Errors point at the value that holds the bad reference (``origin``), which may be a
    ``DEFAULT`` or included value rather than the option being read.
    """

    def __init__(self, config: MergedConfig, section: str, variables: Mapping[str, str]) -> None:
        self.config = config
        self.section = section
        self.variables = variables

    def expand(
        self,
        text: str,
        option: str,
        origin: RawValue | None,
        known_index: dict[str, int],
        depth: int = 1,
    ) -> str:
        def error(message: str, hint: str) -> FilterError:
            return FilterError(
                f"option {option!r} in [{self.section}]: {message}",
                path=origin.path if origin else None,
                line=origin.line if origin else None,
                hint=hint,
            )

        if depth > MAX_INTERPOLATION_DEPTH:
            raise error(
                f"%(...)s references nest deeper than {MAX_INTERPOLATION_DEPTH} levels",
                "look for an option that refers to itself",
            )
        out: list[str] = []
        size = 0
        rest = text
        while (percent := rest.find("%")) >= 0:
            out.append(rest[:percent])
            rest = rest[percent:]
            if rest.startswith("%%"):
                out.append("%")
                rest = rest[2:]
                continue
            reference = _REFERENCE_RE.match(rest)
            if reference is None:
                raise error(
                    f"bad '%' at {rest[:20]!r}", "write a literal % as %%, a reference as %(name)s"
                )
            rest = rest[reference.end() :]
            found = self._lookup(reference.group(1), known_index)
            if found is None:
                raise error(
                    f"%({reference.group(1)})s is not defined",
                    "define it in this section or in [DEFAULT], or fix the name",
                )
            value, inner_origin, inner_known = found
            if "%" in value:
                value = self.expand(value, option, inner_origin or origin, inner_known, depth + 1)
            out.append(value)
            size += len(value)
            if size > MAX_VALUE_LENGTH:
                raise error(
                    f"%(...)s references expand to more than {MAX_VALUE_LENGTH} characters",
                    "look for options that refer to each other many times over",
                )
        out.append(rest)
        return "".join(out)

    def _lookup(
        self, name: str, known_index: dict[str, int]
    ) -> tuple[str, RawValue | None, dict[str, int]] | None:
        """The raw text a reference stands for, where it was written, and the known/ state."""
        key = name.lower()
        if key == "__name__":
            return self.section, None, known_index
        if key in self.variables:
            return self.variables[key], None, known_index
        qualified = _QUALIFIED_RE.fullmatch(name)
        found: RawValue | None = None
        if qualified is None:
            found = self.config.raw(self.section, key)
        else:
            section, opt = qualified.group(1), qualified.group(2).lower()
            if section.lower() == "known":
                found = self.config.known(self.section, opt, known_index.get(opt))
                if found is not None:
                    history = self.config.sections.get(self.section, {}).get(opt, [])
                    position = history.index(found) if found in history else 0
                    return found.text, found, {**known_index, opt: position - 1}
            elif section.lower() == "default":
                default = self.config.defaults.get(opt)
                found = default[-1] if default else None
            elif section in self.config.sections:
                found = self.config.raw(section, opt)
        return (found.text, found, known_index) if found is not None else None


def read_ini(path: str) -> IniFile:
    """Read and parse one file (UTF-8).

    Raises:
        FilterError: the file cannot be read, is not UTF-8, or does not parse.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise FilterError(
            f"cannot read filter file: {error.strerror or error}", path=path
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise FilterError(
            "filter file is not valid UTF-8", path=path, line=line, hint="save it as UTF-8"
        ) from None
    return parse_ini(text, path)


def expand_includes(paths: Sequence[str], cache: dict[str, IniFile] | None = None) -> list[str]:
    """The files to read for ``paths``, in order: each with its includes and ``.local``.

    For each file: its ``before`` includes (recursively), itself, its ``after`` includes;
    every file is followed by its ``.local`` sibling when that exists. Includes are one per
    line, relative to the including file's directory. A file already being expanded is
    skipped (loops). A missing ``.local`` include is skipped (``common.conf`` names
    ``common.local``, which rarely exists); any other missing include is an error.

    Raises:
        FilterError: an include is missing or unreadable, or a file does not parse.
    """
    files = cache if cache is not None else {}
    return _expand(list(paths), (), files)


def _with_locals(paths: list[str]) -> list[str]:
    result: list[str] = []
    for path in paths:
        result.append(path)
        local = os.path.splitext(path)[0] + ".local"
        if local not in paths and os.path.isfile(local):
            result.append(local)
    return result


def _expand(paths: list[str], seen: tuple[str, ...], files: dict[str, IniFile]) -> list[str]:
    result: list[str] = []
    for path in _with_locals(paths):
        if path not in files:
            files[path] = read_ini(path)
        ini = files[path]
        parts: dict[str, list[str]] = {"before": [], "after": []}
        for kind in parts:
            for include, line in _include_entries(ini, kind):
                target = os.path.normpath(os.path.join(os.path.dirname(path), include))
                if target in seen or target == path:
                    continue
                if not os.path.isfile(target):
                    if target.endswith(".local") and not os.path.exists(target):
                        continue
                    problem = "is not a file" if os.path.exists(target) else "not found"
                    raise FilterError(
                        f"included file {include!r} {problem} (looked for {target})",
                        path=path,
                        line=line,
                        hint="fix the [INCLUDES] entry; list one file per line",
                    )
                parts[kind] += _expand([target], (*seen, path), files)
        result += parts["before"] + [path] + parts["after"]
    return result


def _include_entries(ini: IniFile, kind: str) -> list[tuple[str, int]]:
    raw = ini.sections.get("INCLUDES", {}).get(kind)
    if raw is None:
        return []
    text = MergedConfig([ini]).get("INCLUDES", kind) or ""
    entries = text.split("\n")
    numbers = [n for n, _ in raw.lines][: len(entries)]
    if text != raw.text or len(numbers) != len(entries):
        numbers = [raw.line] * len(entries)
    return [(entry, n) for entry, n in zip(entries, numbers, strict=True) if entry]
