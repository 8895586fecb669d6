"""Property tests for the filter-file reader: arbitrary input fails only with FilterError."""

from __future__ import annotations

import configparser
import string
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfban.errors import FilterError
from cfban.fail2ban._ini import MergedConfig, parse_ini
from cfban.fail2ban._loader import load_definition, substitute_tags
from cfban.fail2ban._options import format_filter_spec, parse_filter_spec

PIECES = [
    "[Definition]",
    "[Init]",
    "[INCLUDES]",
    "[DEFAULT]",
    "[lt_file]",
    "failregex = ",
    "ignoreregex =",
    "prefregex=",
    "datepattern = ",
    "maxlines = ",
    "before = ",
    "after = ",
    "mode = ",
    "a = ",
    "b:",
    "%(a)s",
    "%(b)s",
    "%(known/failregex)s",
    "%(default/a)s",
    "%(lt_file/a)s",
    "%(__name__)s",
    "%%",
    "%",
    "<a>",
    "<b>",
    "<mode>",
    "<mdre-<mode>>",
    "<known/a>",
    "<lt_file/a>",
    "<HOST>",
    "x.conf",
    "../",
    "/",
    " ; c",
    "#",
    ";",
    "    ",
    "\t",
    "\n",
    "\n",
    "\n  ",
    "\\",
    "]",
    "[",
    "=",
    "é",
    "\ufeff",
    "\r",
]

_indent = st.sampled_from(["", "", "", " ", "    ", "\t"])
_words = st.text(alphabet=" ab;#%()<>=:[]\\/é\t", max_size=15)
_line = st.one_of(
    st.builds("{}[{}]".format, _indent, st.sampled_from(["Definition", "Init", "DEFAULT", " x "])),
    st.builds(
        "{}{}{}{}".format,
        _indent,
        st.sampled_from(["a", "B", "failregex", "x y", "k?x=1", "mode", "mdre-a"])
        | st.from_regex(r"[a-zA-Z_]{1,8}", fullmatch=True),
        st.sampled_from([" = ", "=", ": ", " :"]),
        _words | st.sampled_from(PIECES),
    ),
    st.builds("{}{}{}".format, _indent, st.sampled_from(["#", ";"]), _words),
    st.builds("{}{}".format, st.sampled_from(["  ", "\t"]), _words | st.sampled_from(PIECES)),
    st.just(""),
)
ini_text = st.lists(_line, max_size=25).map(lambda lines: "\n".join(["[Definition]", *lines]))

filter_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(PIECES) | st.text(max_size=5), max_size=60).map("".join),
    ini_text,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(filter_text)
def test_parse_and_interpolate_raise_only_filter_error(text: str) -> None:
    try:
        ini = parse_ini(text, "x.conf")
    except FilterError as error:
        assert error.path == "x.conf" and error.line is not None
        return
    merged = MergedConfig([ini])
    for section in list(merged.sections) + ["DEFAULT"]:
        for option in merged.own_options(section) or ["a"]:
            try:
                merged.get(section, option, variables={"mode": "m"})
            except FilterError:
                pass


@FAST
@given(filter_text, filter_text, st.text(max_size=40))
def test_load_definition_raises_only_filter_error(main: str, local: str, spec_tail: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "f.conf").write_text(main, encoding="utf-8")
        (root / "f.local").write_text(local, encoding="utf-8")
        (root / "x.conf").write_text(local, encoding="utf-8")
        try:
            definition = load_definition("f" + spec_tail, search_path=[root])
        except FilterError:
            return
        assert all(r.text and "\n" not in r.text for r in definition.failregex)


@FAST
@given(st.dictionaries(st.sampled_from(["a", "b", "c", "failregex"]), filter_text, max_size=4))
def test_substitute_tags_raises_only_filter_error(options: dict[str, str]) -> None:
    try:
        result = substitute_tags(options)
    except FilterError:
        return
    assert set(result) == set(options)


@FAST
@given(st.text(max_size=80))
def test_spec_parser_raises_only_filter_error(spec: str) -> None:
    try:
        name, options = parse_filter_spec(spec)
    except FilterError:
        return
    assert name and name == name.strip()
    assert all(v == v.strip() for v in options.values())


_name_chars = string.ascii_letters + string.digits + "_-.é"
option_names = st.builds(
    "{}{}".format,
    st.text(alphabet=_name_chars, min_size=1, max_size=8),
    st.just("")
    | st.builds(
        "?{}={}".format,
        st.text(_name_chars, min_size=1, max_size=4),
        st.text(_name_chars, max_size=4),
    ),
)
option_values = st.text(max_size=30).filter(
    lambda v: v == v.strip() and not ('"' in v and "'" in v)
)
filter_names = st.text(alphabet=string.ascii_letters + string.digits + "_./-", min_size=1)


@FAST
@given(filter_names, st.dictionaries(option_names, option_values, max_size=5))
def test_spec_round_trip(name: str, options: dict[str, str]) -> None:
    spec = format_filter_spec(name, options)
    assert parse_filter_spec(spec) == (name, options)


def configparser_sections(text: str) -> dict[str, dict[str, str]] | None:
    """What Python's configparser, set up as fail2ban sets it up, reads (raw values)."""
    parser = configparser.RawConfigParser(
        inline_comment_prefixes=(";",), strict=True, empty_lines_in_values=True
    )
    try:
        parser.read_string(text, source="x.conf")
    except configparser.Error:
        return None
    # Each section's own options (items() would mix in DEFAULT's).
    own: dict[str, dict[str, str]] = vars(parser)["_sections"]
    result = {name: dict(options) for name, options in own.items()}
    if parser.defaults():
        result["DEFAULT"] = dict(parser.defaults())
    return result


# Line separators other than "\n" split lines differently in a file and in a string.
plain_text = (ini_text | filter_text).map(
    lambda t: "".join(c for c in t if c not in "\r\ufeff\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
)


@FAST
@given(plain_text)
def test_parser_agrees_with_configparser(text: str) -> None:
    expected = configparser_sections(text)
    try:
        ini = parse_ini(text, "x.conf")
    except FilterError:
        assert expected is None
        return
    assert expected is not None
    mine = {s: {k: v.text for k, v in opts.items()} for s, opts in ini.sections.items()}
    assert {s: o for s, o in mine.items() if o or s != "DEFAULT"} == expected
