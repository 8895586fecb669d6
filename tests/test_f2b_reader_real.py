"""The reader against Debian's fail2ban: stock filters load, and resolve exactly as fail2ban does.

The reference is ``fail2ban-client -c DIR -d``: it prints the commands the client would send
to the server, including every resolved failregex. It runs on a copy of /etc/fail2ban with
``jail.d/defaults-debian.conf`` removed (its sshd jail needs a log this machine lacks) and a
``jail.local`` that enables one jail per filter spec on an empty dummy log.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cfban._resources import filters_dir
from cfban.fail2ban._loader import load_definition
from tests.conftest import require_path, require_program
from tests.support.f2bdump import as_dump

pytestmark = pytest.mark.real

STOCK = Path("/etc/fail2ban")

# Filters written to exercise the INI and interpolation rules; fail2ban must agree on each.
# (Not here: a chain of two %(known/...)s overrides, e.g. .conf < .d/x.conf < .local, which
# fail2ban rejects as endless recursion and cfban resolves link by link.)
EDGE_FILTERS = {
    "cfbantest-known.conf": """
        [Definition]
        failregex = ^one <HOST>
                    ^two <HOST>
        ignoreregex = ^ignored
        """,
    "cfbantest-known.local": """
        [Definition]
        failregex = %(known/failregex)s
            # an indented comment inside the value
            ^three <HOST> # a hash is not a comment ; but this is
        ignoreregex = <known/ignoreregex>|^also
        """,
    "cfbantest-ini.conf": """
        # a comment
        [INCLUDES]
        before = cfbantest-sub/helpers.conf
        [DEFAULT]
        shared = from-default
        [Definition]
        Mixed_Case = MC
        colon: yes
        failregex = ^%(__name__)s %(mixed_case)s %(colon)s <HOST>;x

           ^%(default/shared)s %(cfbantest_helpers/piece)s <HOST>
        \t^tab <HOST>   ; comment
           ^<word>-<known/word>-<user> <HOST>
        prefregex = ^<F-MLFID>\\S+</F-MLFID> <F-CONTENT>.+</F-CONTENT>$
        datepattern = ^%%Y-%%m-%%d %%H:%%M:%%S
                      {^LN-BEG}
        maxlines = 2
        [Init]
        word = init-word
        user = nobody
        """,
    "cfbantest-misc.conf": """
        [DEFAULT]
        dflt = D
        [Definition]
        host = QUIRK
        mode = a
        mdre-a = A
        failregex = ^<x> <HOST> %(known/dflt)s
                    ^<mdre-<mode>> end
        [Init]
        x = v4
        [Init?family=inet6]
        x = v6
        """,
    "cfbantest-sub/helpers.conf": """
        [cfbantest_helpers]
        piece = helper-piece
        [DEFAULT]
        shared = overridden-later
        """,
}

SPECS = [
    "nginx-http-auth[mode=aggressive]",
    'nginx-limit-req[ngx_limit_req_zones="one|two"]',
    "nginx-botsearch[block=x]",
    "sshd[mode=aggressive]",
    "sshd[mode=ddos]",
    "cfbantest-known",
    "cfbantest-ini",
    "cfbantest-ini[word=spec-word]",
    "cfbantest-misc",
]

# Jails that set filter options themselves: they replace the filter's, or extend them.
JAIL_OPTIONS = {
    "jail-extends": (
        "cfbantest-known",
        {"failregex": "%(known/failregex)s\n^jail <HOST>", "ignoreregex": "^jail-ignore"},
    ),
    "jail-replaces": ("nginx-http-auth", {"failregex": "^only <HOST>$", "maxlines": "2"}),
}


def stock_filter_names(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "filter.d").glob("*.conf") if "common" not in p.stem)


def fail2ban_resolve(
    work: Path, extra_filters: dict[str, str], jails: dict[str, tuple[str, dict[str, str]]]
) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Run ``fail2ban-client -d`` on a copy of /etc/fail2ban plus ``extra_filters``.

    ``jails`` maps a jail name to (filter spec, jail options). Returns the config root and,
    per jail, the resolved filter options fail2ban would send to its server.
    """
    require_path(STOCK / "filter.d", "fail2ban's stock filters")
    client = require_program("fail2ban-client")
    root = work / "conf"
    shutil.copytree(STOCK, root, symlinks=True)
    (root / "jail.d" / "defaults-debian.conf").unlink(missing_ok=True)
    for name, text in extra_filters.items():
        target = root / "filter.d" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    dummy = work / "dummy.log"
    dummy.write_text("", encoding="utf-8")
    lines = ["[DEFAULT]", "backend = polling"]
    for jail_name, (spec, options) in jails.items():
        lines += [f"[{jail_name}]", "enabled = true", f"filter = {spec}", f"logpath = {dummy}"]
        lines += [f"{k} = " + v.replace("\n", "\n    ") for k, v in options.items()]
    (root / "jail.local").write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = subprocess.run(
        [client, "-c", str(root), "-d"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    by_jail: dict[str, dict[str, Any]] = {name: {} for name in jails}
    for line in done.stdout.splitlines():
        command = ast.literal_eval(line)
        if len(command) < 4 or command[0] not in ("set", "multi-set"):
            continue
        _, jail_name, option, value = command[:4]
        entry = by_jail.setdefault(jail_name, {})
        if option in ("addfailregex", "addignoreregex"):
            entry.setdefault(option[3:], []).extend(value if command[0] == "multi-set" else [value])
        elif option in ("prefregex", "datepattern") and value == "":
            continue  # fail2ban's server treats an empty one as unset
        elif option in ("prefregex", "datepattern", "maxlines"):
            entry[option] = value
    return root, by_jail


@pytest.fixture(scope="module")
def fail2ban_dump(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """(config root, {spec or jail name: resolved options}) from ``fail2ban-client -d``."""
    specs = stock_filter_names(STOCK) + SPECS
    jails: dict[str, tuple[str, dict[str, str]]] = {f"j{i}": (s, {}) for i, s in enumerate(specs)}
    jails.update(JAIL_OPTIONS)
    edge = {name: textwrap.dedent(text).lstrip("\n") for name, text in EDGE_FILTERS.items()}
    root, by_jail = fail2ban_resolve(tmp_path_factory.mktemp("f2b"), edge, jails)
    resolved = {spec: by_jail[f"j{i}"] for i, spec in enumerate(specs)}
    resolved.update({name: by_jail[name] for name in JAIL_OPTIONS})
    return root, resolved


def test_every_stock_filter_loads() -> None:
    root = require_path(STOCK / "filter.d", "fail2ban's stock filters")
    names = stock_filter_names(STOCK)
    assert len(names) > 50
    for name in names:
        definition = load_definition(name, search_path=[root])
        assert definition.name == name
        assert str(root / f"{name}.conf") in definition.files


def test_http_auth_aggressive_is_auth_plus_fallback() -> None:
    root = require_path(STOCK / "filter.d", "fail2ban's stock filters")
    count = {
        mode: len(load_definition(f"nginx-http-auth[mode={mode}]", search_path=[root]).failregex)
        for mode in ("normal", "auth", "fallback", "aggressive")
    }
    assert count["normal"] == count["auth"] >= 1
    assert count["aggressive"] == count["auth"] + count["fallback"] >= 2


def test_nginx_filters_resolve_exactly_like_fail2ban(
    fail2ban_dump: tuple[Path, dict[str, Any]],
) -> None:
    root, expected = fail2ban_dump
    nginx = [s for s in expected if s.startswith("nginx-")]
    assert len(nginx) >= 4
    for spec in nginx:
        assert expected[spec]["failregex"], spec
        assert as_dump(spec, root) == expected[spec], spec


def test_all_stock_filters_resolve_exactly_like_fail2ban(
    fail2ban_dump: tuple[Path, dict[str, Any]],
) -> None:
    root, expected = fail2ban_dump
    stock = [spec for spec in expected if spec not in JAIL_OPTIONS]
    differ = [spec for spec in stock if as_dump(spec, root) != expected[spec]]
    assert differ == []


def test_edge_case_filters_resolve_exactly_like_fail2ban(
    fail2ban_dump: tuple[Path, dict[str, Any]],
) -> None:
    root, expected = fail2ban_dump
    assert expected["cfbantest-known"]["failregex"] == [
        "^one <HOST>",
        "^two <HOST>",
        "^three <HOST> # a hash is not a comment",
    ]
    assert expected["cfbantest-misc"]["failregex"] == ["^<x> QUIRK D", "^A end"]
    for spec in [s for s in SPECS if s.startswith("cfbantest-")]:
        assert as_dump(spec, root) == expected[spec], spec


def test_jail_filter_options_replace_or_extend_like_fail2ban(
    fail2ban_dump: tuple[Path, dict[str, Any]],
) -> None:
    root, expected = fail2ban_dump
    assert expected["jail-extends"]["failregex"][-2:] == [
        "^three <HOST> # a hash is not a comment",
        "^jail <HOST>",
    ]
    for name, (spec, options) in JAIL_OPTIONS.items():
        assert as_dump(spec, root, options) == expected[name], name


def test_bundled_filters_resolve_exactly_like_fail2ban(tmp_path: Path) -> None:
    bundled = filters_dir()
    files = {p.name: p.read_text(encoding="utf-8") for p in sorted(bundled.glob("*.conf"))}
    names = [Path(n).stem for n in files if "common" not in n]
    assert names
    root, expected = fail2ban_resolve(tmp_path, files, {n: (n, {}) for n in names})
    for name in names:
        assert expected[name]["failregex"], name
        assert as_dump(name, root) == expected[name], name
        assert as_dump(name, bundled) == expected[name], name
