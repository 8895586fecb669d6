"""Regex tags, inline flags, compile errors, the failure-id rule (fail2ban-format.md §2.1-2.3)."""

from __future__ import annotations

import re

import pytest

from cfban.errors import FilterError
from cfban.fail2ban import FilterDefinition, RegexSource
from cfban.fail2ban._regex import (
    STATIC_TAGS,
    compile_filter,
    compile_regex,
    expand_tags,
    rewrite_inline_flags,
)

IP4 = r"(?:::f{4,6}:)?(?P<ip4>(?:\d{1,3}\.){3}\d{1,3})"
IP6 = r"(?P<ip6>(?:[0-9a-fA-F]{1,4}::?|:){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):))"
DNS = r"(?P<dns>[\w\-.^_]*\w)"
ADDR = rf"\[?(?:{IP4}|{IP6})\]?"


def fail(*texts: str, **kwargs: object) -> FilterDefinition:
    sources = tuple(
        RegexSource(t, "failregex", "/etc/x/filter.d/demo.conf", 10 + i)
        for i, t in enumerate(texts)
    )
    return FilterDefinition(name="demo", failregex=sources, **kwargs)  # type: ignore[arg-type]


def test_the_table_of_built_in_tags() -> None:
    assert expand_tags("<IP4>") == IP4
    assert expand_tags("<IP6>") == IP6
    assert expand_tags("<DNS>") == DNS
    assert expand_tags("<ADDR>") == ADDR
    assert expand_tags("<CIDR>") == r"(?P<cidr>\d+)"
    assert expand_tags("<SUBNET>") == rf"\[?(?:{IP4}|{IP6})(?:/(?P<cidr>\d+))?\]?"
    assert expand_tags("<F-ID/>") == r"(?P<fid>\S+)"
    assert expand_tags("<F-PORT/>") == r"(?P<fport>\w+)"
    for name in ("IP4", "IP6", "DNS", "ADDR", "CIDR", "SUBNET"):
        assert STATIC_TAGS[f"F-{name}/"] == STATIC_TAGS[name]


def test_host_is_addr_unless_dns_is_used() -> None:
    assert expand_tags("<HOST>") == ADDR
    assert expand_tags("<HOST>", usedns="no") == ADDR
    for mode in ("yes", "warn", "raw"):
        assert expand_tags("<HOST>", usedns=mode) == rf"(?:{ADDR}|{DNS})"


def test_skiplines_numbers_each_use() -> None:
    expanded = expand_tags("a<SKIPLINES>b<SKIPLINES>c")
    assert expanded == r"a\n(?P<skiplines0>(?:(?:.*\n)*?))b\n(?P<skiplines1>(?:(?:.*\n)*?))c"


def test_generic_f_tags() -> None:
    assert expand_tags("<F-USER>.+</F-USER>") == "(?P<user>.+)"
    assert expand_tags("<F-ID>x</F-ID>") == "(?P<fid>x)"
    assert expand_tags("<F-PORT>x</F-PORT>") == "(?P<fport>x)"
    assert expand_tags("<F-ALT_USER1>x</F-ALT_USER1>") == "(?P<alt_user1>x)"
    # lower case is not a tag; a closing tag never opened and unknown tags stay literal
    assert expand_tags("<F-user>x</F-user>") == "<F-user>x</F-user>"
    assert expand_tags("x</F-USER>") == "x</F-USER>"
    assert expand_tags("<mdre-foo> <F-NAME/>") == "<mdre-foo> <F-NAME/>"


def test_inline_global_flags_become_scoped() -> None:
    assert rewrite_inline_flags("((?i)abc)") == "(?i:abc)"
    assert rewrite_inline_flags("x(?:(?i)abc)") == "x(?i:abc)"
    assert rewrite_inline_flags(r"\((?i)abc)") == r"\((?i)abc)"
    assert rewrite_inline_flags("(?i)abc") == "(?i)abc"
    compiled = compile_regex(RegexSource("^<HOST> ((?i)FAILED)$", "failregex"), filter_name="d")
    assert compiled.pattern.search("1.2.3.4 failed\n")
    assert "ip4" in compiled.pattern.groupindex


def test_a_global_flag_after_the_start_is_a_filter_error() -> None:
    with pytest.raises(FilterError) as caught:
        compile_filter(fail("^<HOST> ok", "^(?i)<HOST> bad"))
    message = str(caught.value)
    assert "failregex line 2" in message
    assert "'demo'" in message
    assert message.startswith("/etc/x/filter.d/demo.conf:11: ")
    assert caught.value.exit_code == 78


def test_duplicate_host_tag_is_a_filter_error() -> None:
    with pytest.raises(FilterError, match="failregex line 1 of filter 'demo' does not compile"):
        compile_filter(fail("<HOST> and <HOST>"))


def test_prefregex_error_names_the_prefregex() -> None:
    definition = fail("x", prefregex=RegexSource("^(<HOST>", "prefregex", "p.conf", 3))
    with pytest.raises(FilterError, match=r"^p\.conf:3: prefregex of filter 'demo'"):
        compile_filter(definition)


def test_multiline_only_when_maxlines_above_one() -> None:
    one = compile_filter(fail("^<HOST>$"))
    two = compile_filter(fail("^<HOST>$", maxlines=2, ignoreregex=(RegexSource("x", "i"),)))
    assert not one.failregex[0].pattern.flags & re.MULTILINE
    assert two.failregex[0].pattern.flags & re.MULTILINE
    assert not two.ignoreregex[0].pattern.flags & re.MULTILINE


def test_failure_id_is_required() -> None:
    with pytest.raises(FilterError, match="failregex line 1 of filter 'demo' has no failure-id"):
        compile_filter(fail("^login failed for <F-USER>.*</F-USER>$"))
    for ok in ("<F-ID>\\S+</F-ID>", "<IP4>", "<IP6>", "<DNS>", "<F-MLFID>\\d+</F-MLFID>"):
        assert compile_filter(fail(f"^x {ok}$")).failregex
    # the id may come from the prefregex instead
    definition = fail("^user <F-USER>\\S+</F-USER>$", prefregex=RegexSource("<ADDR>", "prefregex"))
    assert compile_filter(definition).prefregex is not None


def test_a_filter_needs_a_failregex() -> None:
    with pytest.raises(FilterError, match="has no failregex"):
        compile_filter(FilterDefinition(name="demo", failregex=()))


def test_alt_groups_fill_an_empty_target() -> None:
    compiled = compile_regex(
        RegexSource(
            r"^<HOST> (?:user <F-USER>\w+</F-USER>|as <F-ALT_USER>\w+</F-ALT_USER>)",
            "failregex",
        ),
        filter_name="d",
    )
    found = compiled.pattern.search("1.2.3.4 as bob")
    assert found is not None
    assert compiled.groups(found)["user"] == "bob"
    found = compiled.pattern.search("1.2.3.4 user amy")
    assert found is not None
    assert compiled.groups(found)["user"] == "amy"
