"""The fail2ban filter-file reader: specs, the INI dialect, includes, interpolation, tags."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cfban.errors import FilterError
from cfban.fail2ban._ini import MergedConfig, expand_includes, parse_ini, read_ini
from cfban.fail2ban._loader import load_definition, substitute_tags
from cfban.fail2ban._options import format_filter_spec, parse_filter_spec, splitwords


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(directory: Path, spec: str, **jail: str) -> tuple[list[str], dict[str, str]]:
    definition = load_definition(spec, search_path=[directory], jail_options=jail or None)
    return [r.text for r in definition.failregex], dict(definition.options)


# --- filter specs -------------------------------------------------------------------------


def test_spec_plain_name() -> None:
    assert parse_filter_spec("nginx-http-auth") == ("nginx-http-auth", {})


def test_spec_all_value_forms_and_chained_groups() -> None:
    spec = "f[opt1=val, opt2=\"v,with,commas\", opt3='x]y'][opt4=y]"
    assert parse_filter_spec(spec) == (
        "f",
        {"opt1": "val", "opt2": "v,with,commas", "opt3": "x]y", "opt4": "y"},
    )


def test_spec_path_and_trailing_comma_and_stripping() -> None:
    assert parse_filter_spec("path/to/f.conf[ a= 1 ,]") == ("path/to/f.conf", {"a": "1"})


def test_spec_conditional_option_name() -> None:
    assert parse_filter_spec("f[x?family=inet6=v6]") == ("f", {"x?family=inet6": "v6"})


@pytest.mark.parametrize(
    "spec",
    ["", "[a=1]", "f[a=1", "f[a=1]x", 'f[a="x"y]', "f[=1]", "f[a]", "f[a b=1]", "f[a =1]"],
)
def test_spec_malformed(spec: str) -> None:
    with pytest.raises(FilterError, match="invalid filter spec"):
        parse_filter_spec(spec)


def test_spec_format_round_trip() -> None:
    options = {"mode": "aggressive", "zones": "one,two", "q": 'say "hi"', "e": ""}
    spec = format_filter_spec("f", options)
    assert parse_filter_spec(spec) == ("f", options)


def test_splitwords() -> None:
    assert splitwords(" a, b\n c  ,,d ") == ["a", "b", "c", "d"]
    assert splitwords(None) == []


# --- INI syntax ---------------------------------------------------------------------------


def parse(text: str) -> dict[str, dict[str, str]]:
    ini = parse_ini(textwrap.dedent(text).lstrip("\n"), "t.conf")
    return {s: {k: v.text for k, v in opts.items()} for s, opts in ini.sections.items()}


def test_sections_case_sensitive_options_lower_cased() -> None:
    assert parse("[Definition]\nFailRegex = x\n[definition]\nA: y\n") == {
        "Definition": {"failregex": "x"},
        "definition": {"a": "y"},
    }


def test_multiline_values_are_stripped_and_keep_inner_blank_lines() -> None:
    text = "[D]\nfailregex = a  \n    b  \n\n\t  c\n\n\nx = 1\n"
    assert parse(text)["D"] == {"failregex": "a\nb\n\nc", "x": "1"}


def test_full_line_comments_even_indented_inside_values() -> None:
    text = "# top\n[D]\n; c\nr = a\n    # dropped\n    ; dropped\n    b\n"
    assert parse(text)["D"] == {"r": "a\nb"}


def test_inline_comments_only_semicolon_after_whitespace() -> None:
    text = "[D]\na = foo ;bar\nb = foo;bar\nc = ^B <HOST> # x\nd = x\n   y\t; z\n"
    assert parse(text)["D"] == {"a": "foo", "b": "foo;bar", "c": "^B <HOST> # x", "d": "x\ny"}


def test_option_line_positions_are_recorded() -> None:
    ini = parse_ini("[D]\n\na = 1\n    2\n", "x.conf")
    raw = ini.sections["D"]["a"]
    assert (raw.path, raw.line, raw.lines) == ("x.conf", 3, ((3, "1"), (4, "2")))


def test_section_header_with_trailing_text_and_empty_value() -> None:
    assert parse("[D] ; comment\nignoreregex =\n") == {"D": {"ignoreregex": ""}}


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("a = 1\n", 1, "before any"),
        ("[D]\na = 1\njunk\n", 3, "cannot parse"),
        ("[D]\n = 1\n", 2, "cannot parse"),
        ("[D]\na = 1\nA = 2\n", 3, "set twice"),
        ("[D]\n[E]\n[D]\n", 3, "twice"),
    ],
)
def test_broken_files_name_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(FilterError, match=message) as caught:
        parse_ini(text, "bad.conf")
    assert (caught.value.path, caught.value.line) == ("bad.conf", line)
    assert str(caught.value).startswith(f"bad.conf:{line}: ")


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "x.conf"
    path.write_bytes(b"[D]\na = 1\nb = \xff\n")
    with pytest.raises(FilterError, match="UTF-8") as caught:
        read_ini(str(path))
    assert caught.value.line == 3


# --- interpolation ------------------------------------------------------------------------


def config(*texts: str) -> MergedConfig:
    return MergedConfig(
        [parse_ini(textwrap.dedent(t).lstrip("\n"), f"f{i}.conf") for i, t in enumerate(texts)]
    )


def test_percent_interpolation_forms() -> None:
    merged = config(
        """
        [DEFAULT]
        d = dv
        x = default-x
        [lt_file]
        p = lt-%(x)s
        [Definition]
        x = own-x
        a = %(x)s|%(d)s|%(__name__)s|%(default/x)s|%(lt_file/p)s|100%%
        """
    )
    # A section-qualified value is interpolated in the reading section, as fail2ban does.
    assert merged.get("Definition", "a") == "own-x|dv|Definition|default-x|lt-own-x|100%"


def test_variables_take_precedence() -> None:
    merged = config("[Definition]\nmode = normal\nr = <%(mode)s>\n")
    assert merged.get("Definition", "r", variables={"MODE": "aggressive"}) == "<aggressive>"


@pytest.mark.parametrize(
    ("value", "message", "line"),
    [
        ("%(nope)s", "not defined", 3),
        ("50% off", "bad '%'", 3),
        ("%(x)", "bad '%'", 3),
        ("%(loop)s", "deeper than 10", 2),
        ("%(known/r)s", "not defined", 3),
    ],
)
def test_interpolation_errors_name_the_option(value: str, message: str, line: int) -> None:
    merged = config(f"[Definition]\nloop = %(loop)s\nr = {value}\n")
    with pytest.raises(FilterError, match=message) as caught:
        merged.get("Definition", "r")
    assert (caught.value.path, caught.value.line) == ("f0.conf", line)
    assert "option 'r' in [Definition]" in str(caught.value)


def test_interpolation_error_points_at_the_file_holding_the_bad_reference() -> None:
    merged = config("[DEFAULT]\n\nbroken = %(gone)s\n", "[Definition]\nr = %(broken)s\n")
    with pytest.raises(FilterError, match=r"%\(gone\)s is not defined") as caught:
        merged.get("Definition", "r")
    assert (caught.value.path, caught.value.line) == ("f0.conf", 3)


def test_known_refers_to_the_value_before_each_override() -> None:
    merged = config(
        "[Definition]\nr = a\n",
        "[Definition]\nr = %(known/r)s\n    b\n",
        "[Definition]\nr = %(known/r)s\n    c\n",
    )
    assert merged.get("Definition", "r") == "a\nb\nc"


def test_known_falls_back_to_default() -> None:
    merged = config("[DEFAULT]\nr = d\n[Definition]\nr = %(known/r)s x\n")
    assert merged.get("Definition", "r") == "d x"


def test_default_is_merged_globally_and_overridable() -> None:
    merged = config("[DEFAULT]\nv = 1\n", "[DEFAULT]\nv = 2\n[Definition]\nr = %(v)s\n")
    assert merged.get("Definition", "r") == "2"


# --- includes and the file list ------------------------------------------------------------


def test_include_order_local_siblings_and_loops(tmp_path: Path) -> None:
    write(tmp_path, "sub/b.conf", "[INCLUDES]\nbefore = ../f.conf\n[Definition]\nb = 1\n")
    write(tmp_path, "sub/b.local", "[Definition]\nb = 2\n")
    write(tmp_path, "a.conf", "[Definition]\na = 1\n")
    write(
        tmp_path,
        "f.conf",
        """
        [INCLUDES]
        before = a.conf
                 sub/b.conf
        after = missing.local
        [Definition]
        """,
    )
    write(tmp_path, "f.local", "[INCLUDES]\nafter = a.conf\n")
    names = [
        Path(p).relative_to(tmp_path).as_posix()
        for p in expand_includes([str(tmp_path / "f.conf"), str(tmp_path / "f.local")])
    ]
    assert names == ["a.conf", "sub/b.conf", "sub/b.local", "f.conf", "f.local", "a.conf"]


def test_include_line_is_split_on_newlines_only(tmp_path: Path) -> None:
    write(tmp_path, "f.conf", "[INCLUDES]\nbefore = a.conf b.conf\n[Definition]\n")
    with pytest.raises(FilterError, match="'a.conf b.conf' not found") as caught:
        expand_includes([str(tmp_path / "f.conf")])
    assert caught.value.line == 2


def test_missing_include_names_including_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "f.conf", "[INCLUDES]\nbefore = a.conf\n    gone.conf\n[Definition]\n")
    write(tmp_path, "a.conf", "[Definition]\n")
    with pytest.raises(FilterError, match="gone.conf") as caught:
        load_definition("f", search_path=[tmp_path])
    assert (caught.value.path, caught.value.line) == (str(tmp_path / "f.conf"), 3)


def test_broken_include_names_its_own_file(tmp_path: Path) -> None:
    write(tmp_path, "f.conf", "[INCLUDES]\nbefore = a.conf\n[Definition]\nfailregex = x\n")
    write(tmp_path, "a.conf", "[Definition]\n  oops\n")
    with pytest.raises(FilterError) as caught:
        load_definition("f", search_path=[tmp_path])
    assert (caught.value.path, caught.value.line) == (str(tmp_path / "a.conf"), 2)


def test_file_list_conf_d_and_local_order(tmp_path: Path) -> None:
    write(tmp_path, "f.conf", "[Definition]\nfailregex = conf\n")
    write(tmp_path, "f.d/2.conf", "[Definition]\nfailregex = %(known/failregex)s d2\n")
    write(tmp_path, "f.d/1.conf", "[Definition]\nfailregex = %(known/failregex)s d1\n")
    write(tmp_path, "f.local", "[Definition]\nfailregex = %(known/failregex)s local\n")
    write(tmp_path, "f.d/1.local", "[Definition]\nfailregex = %(known/failregex)s l1\n")
    definition = load_definition("f", search_path=[tmp_path])
    assert [r.text for r in definition.failregex] == ["conf d1 d2 local l1"]
    assert [Path(p).relative_to(tmp_path).as_posix() for p in definition.files] == [
        "f.conf",
        "f.d/1.conf",
        "f.d/2.conf",
        "f.local",
        "f.d/1.local",
    ]


# --- the loader -----------------------------------------------------------------------------


def test_local_override_appends_with_known(tmp_path: Path) -> None:
    write(
        tmp_path,
        "web.conf",
        """
        [Definition]
        failregex = ^<HOST> one
                    ^<HOST> two
        ignoreregex =
        """,
    )
    write(
        tmp_path,
        "web.local",
        """
        [Definition]
        failregex = %(known/failregex)s
                    # a comment line in the middle is dropped
                    ^<HOST> three ; and so is this comment
        """,
    )
    definition = load_definition("web", search_path=[tmp_path])
    assert [r.text for r in definition.failregex] == ["^<HOST> one", "^<HOST> two", "^<HOST> three"]
    assert definition.ignoreregex == ()
    assert {r.path for r in definition.failregex} == {str(tmp_path / "web.local")}


MDRE = """
[Definition]
mode = normal
mdre-auth = ^auth <HOST>$
mdre-fallback = ^fallback <HOST>$
mdre-normal = %(mdre-auth)s
mdre-aggressive = %(mdre-auth)s
                  %(mdre-fallback)s
failregex = <mdre-<mode>>
"""


def test_nested_mode_tags(tmp_path: Path) -> None:
    write(tmp_path, "m.conf", MDRE)
    assert load(tmp_path, "m")[0] == ["^auth <HOST>$"]
    assert load(tmp_path, "m[mode=aggressive]")[0] == ["^auth <HOST>$", "^fallback <HOST>$"]
    assert load(tmp_path, "m[mode=nosuch]")[0] == ["<mdre-nosuch>"]


def test_precedence_definition_init_spec_jail(tmp_path: Path) -> None:
    write(
        tmp_path,
        "p.conf",
        """
        [Definition]
        a = def
        b = def
        c = def
        failregex = <a> <b> <c> <d> <known/b>
        [Init]
        b = init
        c = init
        d = init
        """,
    )
    assert load(tmp_path, "p")[0] == ["def init init init init"]
    assert load(tmp_path, "p[c=spec, d=spec]")[0] == ["def init spec spec init"]
    assert load(tmp_path, "p[c=spec]", c="jail", a="jail")[0] == ["jail init jail init init"]


def test_jail_failregex_replaces_filter_failregex(tmp_path: Path) -> None:
    write(tmp_path, "r.conf", "[Definition]\nx = X\nfailregex = ^own <HOST>\n")
    regexes, options = load(tmp_path, "r", failregex="^jail <x> <HOST>\n\n^two <HOST>")
    assert regexes == ["^jail X <HOST>", "^two <HOST>"]


def test_logtype_default_and_section_tags(tmp_path: Path) -> None:
    write(
        tmp_path,
        "common.conf",
        """
        [DEFAULT]
        __prefix = <lt_<logtype>/__prefix>
        [lt_file]
        __prefix = F
        [lt_short]
        __prefix = S
        """,
    )
    write(
        tmp_path,
        "lt.conf",
        "[INCLUDES]\nbefore = common.conf\n[Definition]\nfailregex = ^%(__prefix)s <HOST>\n",
    )
    regexes, options = load(tmp_path, "lt")
    assert (regexes, options["logtype"]) == (["^F <HOST>"], "file")
    assert load(tmp_path, "lt[logtype=short]")[0] == ["^S <HOST>"]


def test_unknown_tags_stay_verbatim(tmp_path: Path) -> None:
    write(tmp_path, "u.conf", "[Definition]\nfailregex = ^<F-USER>\\S+</F-USER> <HOST> <ADDR>\n")
    assert load(tmp_path, "u")[0] == ["^<F-USER>\\S+</F-USER> <HOST> <ADDR>"]


def test_lowercase_option_named_like_a_tag_replaces_it(tmp_path: Path) -> None:
    # fail2ban's fallback lookup lower-cases the tag name: an option "host" replaces <HOST>.
    write(tmp_path, "h.conf", "[Definition]\nhost = X\nfailregex = ^<HOST>\n")
    assert load(tmp_path, "h")[0] == ["^X"]


def test_self_reference_is_an_error_with_location(tmp_path: Path) -> None:
    write(tmp_path, "s.conf", "[Definition]\n\nfailregex = a <failregex>\n")
    with pytest.raises(FilterError, match="refers to itself") as caught:
        load_definition("s", search_path=[tmp_path])
    assert (caught.value.path, caught.value.line) == (str(tmp_path / "s.conf"), 3)


def test_tag_loop_between_options_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "l.conf", "[Definition]\na = <b>\nb = <a>\nfailregex = <a>\n")
    with pytest.raises(FilterError, match="refers to itself"):
        load_definition("l", search_path=[tmp_path])


def test_substitute_tags_limit() -> None:
    with pytest.raises(FilterError, match="refers to itself"):
        substitute_tags({"a": "<b>", "b": "x<b>"})
    assert substitute_tags({"a": "<b><c>", "b": "<c>", "c": "1"}) == {
        "a": "11",
        "b": "1",
        "c": "1",
    }


def test_definition_fields(tmp_path: Path) -> None:
    write(
        tmp_path,
        "full.conf",
        """
        [Definition]
        prefregex = ^<F-MLFID>x</F-MLFID> <F-CONTENT>.+</F-CONTENT>$
        failregex = ^a <HOST>

                    ^b <HOST>
        ignoreregex = ^ok
        datepattern = ^%%Y-%%m-%%d %%H:%%M:%%S
        maxlines = 3
        usedns = yes
        logtimezone = UTC
        """,
    )
    definition = load_definition("full", search_path=[tmp_path])
    assert definition.name == "full"
    assert [(r.text, r.line) for r in definition.failregex] == [("^a <HOST>", 3), ("^b <HOST>", 5)]
    assert [r.text for r in definition.ignoreregex] == ["^ok"]
    assert definition.prefregex is not None and definition.prefregex.option == "prefregex"
    assert definition.datepattern == "^%Y-%m-%d %H:%M:%S"
    assert (definition.maxlines, definition.usedns, definition.logtimezone) == (3, "yes", "UTC")


def test_defaults_when_unset(tmp_path: Path) -> None:
    write(tmp_path, "min.conf", "[Definition]\nfailregex = ^<HOST>\n")
    definition = load_definition("min", search_path=[tmp_path])
    assert (definition.maxlines, definition.usedns, definition.datepattern) == (1, "no", None)
    assert definition.prefregex is None and definition.logtimezone is None


def test_lookup_in_search_path_and_config_root(tmp_path: Path) -> None:
    write(tmp_path, "first/x.conf", "[Definition]\nfailregex = first\n")
    write(tmp_path, "root/filter.d/y.conf", "[Definition]\nfailregex = root\n")
    write(tmp_path, "root/filter.d/x.conf", "[Definition]\nfailregex = second\n")
    search = [tmp_path / "first", tmp_path / "root"]
    assert [r.text for r in load_definition("x", search_path=search).failregex] == ["first"]
    assert [r.text for r in load_definition("y", search_path=search).failregex] == ["root"]


def test_path_spec(tmp_path: Path) -> None:
    path = write(tmp_path, "own/z.conf", MDRE)
    definition = load_definition(f"{path}[mode=aggressive]", search_path=[])
    assert (definition.name, len(definition.failregex)) == ("z", 2)


def test_unknown_filter_lists_where_it_looked(tmp_path: Path) -> None:
    (tmp_path / "filter.d").mkdir()
    with pytest.raises(FilterError, match="not found") as caught:
        load_definition("nope", search_path=[tmp_path])
    assert str(tmp_path / "filter.d") in str(caught.value)
    with pytest.raises(FilterError, match="not found"):
        load_definition(str(tmp_path / "gone.conf"), search_path=[tmp_path])


def test_invalid_spec_through_loader(tmp_path: Path) -> None:
    with pytest.raises(FilterError, match="invalid filter spec"):
        load_definition("x[a=", search_path=[tmp_path])


def test_include_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "d.conf").mkdir()
    write(tmp_path, "f.conf", "[INCLUDES]\nafter = d.conf\n[Definition]\n")
    with pytest.raises(FilterError, match="is not a file") as caught:
        load_definition("f", search_path=[tmp_path])
    assert caught.value.line == 2


def test_bom_crlf_and_conditional_sections(tmp_path: Path) -> None:
    text = "\ufeff[Definition]\r\nfailregex = ^<x> <HOST>\r\n[Init]\r\nx = v4\r\n"
    (tmp_path / "c.conf").write_text(text + "[Init?family=inet6]\r\nx = v6\r\n", "utf-8")
    definition = load_definition("c", search_path=[tmp_path])
    # fail2ban leaves a tag alone when a conditional variant of it exists.
    assert [r.text for r in definition.failregex] == ["^<x> <HOST>"]
    assert definition.options["x?family=inet6"] == "v6"


def test_jail_option_extends_filter_with_known(tmp_path: Path) -> None:
    write(tmp_path, "k.conf", "[Definition]\nfailregex = ^<HOST> a\nignoreregex = ^i\n")
    regexes, options = load(tmp_path, "k", failregex="%(known/failregex)s\n^<HOST> jail")
    assert regexes == ["^<HOST> a", "^<HOST> jail"]
    with pytest.raises(FilterError, match="known/nothing"):
        load(tmp_path, "k", failregex="%(known/nothing)s")


def test_conf_name_without_directory_uses_search_path(tmp_path: Path) -> None:
    write(tmp_path, "lib/n.conf", "[Definition]\nfailregex = ^<HOST>\n")
    definition = load_definition("n.conf[a=1]", search_path=[tmp_path / "lib"])
    assert (definition.name, definition.options["a"]) == ("n", "1")


def test_prefregex_and_regex_locations(tmp_path: Path) -> None:
    write(tmp_path, "loc.conf", "[Definition]\nprefregex = ^p\nfailregex = ^a <HOST>\n")
    write(
        tmp_path,
        "loc.local",
        "[Definition]\n\nfailregex = %(known/failregex)s\n    ^b <HOST>\n",
    )
    definition = load_definition("loc", search_path=[tmp_path])
    assert definition.prefregex is not None
    assert (definition.prefregex.text, definition.prefregex.line) == ("^p", 2)
    local = str(tmp_path / "loc.local")
    assert [(r.path, r.line) for r in definition.failregex] == [(local, 3), (local, 3)]


def test_exponential_references_are_refused_not_built() -> None:
    fan = " ".join(["%(v{})s"] * 8)
    lines = ["[Definition]", "v0 = " + "x" * 100]
    lines += [f"v{i} = " + fan.format(*[i - 1] * 8) for i in range(1, 9)]
    merged = config("\n".join(lines) + "\n")
    with pytest.raises(FilterError, match="more than 1000000 characters"):
        merged.get("Definition", "v8")
    tags = {"t0": "y" * 100} | {f"t{i}": f"<t{i - 1}>" * 8 for i in range(1, 9)}
    with pytest.raises(FilterError, match="would grow"):
        substitute_tags(tags)


@pytest.mark.parametrize("value", ["two", "0", "-1"])
def test_maxlines_must_be_positive(tmp_path: Path, value: str) -> None:
    write(tmp_path, "mx.conf", f"[Definition]\nfailregex = ^<HOST>\nmaxlines = {value}\n")
    with pytest.raises(FilterError, match="at least 1") as caught:
        load_definition("mx", search_path=[tmp_path])
    assert (caught.value.path, caught.value.line) == (str(tmp_path / "mx.conf"), 3)


def test_usedns_is_normalised(tmp_path: Path) -> None:
    write(tmp_path, "dns.conf", "[Definition]\nfailregex = ^<HOST>\nusedns = WARN\n")
    assert load_definition("dns", search_path=[tmp_path]).usedns == "warn"
    assert load_definition("dns[usedns=maybe]", search_path=[tmp_path]).usedns == "no"


def test_first_pass_rule_init_values_not_visible_to_percent_references(tmp_path: Path) -> None:
    # fail2ban reads [Definition] once without [Init] values: %(word)s fails there.
    write(tmp_path, "fp.conf", "[Definition]\nfailregex = ^%(word)s <HOST>\n[Init]\nword = w\n")
    with pytest.raises(FilterError, match="not defined") as caught:
        load_definition("fp", search_path=[tmp_path])
    assert caught.value.hint is not None and "<name>" in caught.value.hint
    assert [r.text for r in load_definition("fp[word=s]", search_path=[tmp_path]).failregex] == [
        "^s <HOST>"
    ]
    write(tmp_path, "fp2.conf", "[Definition]\nfailregex = ^<word> <HOST>\n[Init]\nword = w\n")
    assert [r.text for r in load_definition("fp2", search_path=[tmp_path]).failregex] == [
        "^w <HOST>"
    ]
