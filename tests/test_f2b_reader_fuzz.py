"""Differential test: random filter files resolve exactly as fail2ban's own reader does.

A seeded generator writes filters that mix the dialect's features (includes, ``.local``,
``DEFAULT``/``Init``/helper sections, ``%(...)s`` of every kind, nested ``<tag>`` references,
comments, continuation lines, filter-spec options). fail2ban's ``JailReader``, run by the
interpreter of the installed fail2ban, resolves each as a jail would; cfban must produce the
same regexes, or fail where fail2ban fails.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cfban.errors import FilterError
from tests.conftest import require_path, require_program
from tests.support.f2bdump import as_dump

pytestmark = pytest.mark.real

REFERENCE = """
import json, logging, sys
from fail2ban.client.jailreader import JailReader
logging.disable(logging.CRITICAL)
root, names = sys.argv[1], json.loads(sys.argv[2])
out = {}
for jail in names:
    try:
        reader = JailReader(jail, basedir=root, share_config={}, force_enable=True)
        reader.read()
        if not reader.getOptions():
            out[jail] = {"error": str(reader.options.get("config-error"))}
            continue
        entry = {}
        for cmd in reader.convert(allow_no_files=True):
            if cmd[0] == "config-error":
                entry = {"error": cmd[1]}
                break
            if len(cmd) < 4 or cmd[0] not in ("set", "multi-set"):
                continue
            opt, val = cmd[2], cmd[3]
            if opt in ("addfailregex", "addignoreregex"):
                entry.setdefault(opt[3:], []).extend(val if cmd[0] == "multi-set" else [val])
            elif opt in ("prefregex", "datepattern") and val == "":
                continue
            elif opt in ("prefregex", "datepattern", "maxlines"):
                entry[opt] = val
        out[jail] = entry
    except Exception as error:
        out[jail] = {"error": "%s: %s" % (type(error).__name__, error)}
print(json.dumps(out))
"""

PIECES = [
    *("x", "^", "<HOST>", "<F-USER>", "<a>", "<b>", "<c>", "<mode>", "<mdre-<mode>>", "<host>"),
    *("%(a)s", "%(b)s", "%(c)s", "%(mode)s", "%(logtype)s", "%(__name__)s", "%%"),
    *("%(known/failregex)s", "%(known/a)s", "%(default/a)s", "%(lt/a)s"),
    *("<known/a>", "<known/b>", "<known/failregex>", "<lt/a>", "<lt_<logtype>/a>"),
    *(" ;c", " #c", ";x"),
]
NAMES = [
    *("a", "b", "c", "mode", "logtype", "host", "mdre-normal", "mdre-x"),
    *("failregex", "ignoreregex", "prefregex", "datepattern", "maxlines", "usedns"),
]
BASE = """[DEFAULT]
a = A<b>
b = B
c = %(a)sC
failregex = base
mode = normal
[lt]
a = LT%(b)s
[lt_file]
a = LTF
[lt_short]
a = LTS<c>
"""


def value(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 3)))


def section(rng: random.Random, name: str) -> list[str]:
    lines = [f"[{name}]"]
    for option in rng.sample(NAMES, rng.randint(0, 4)):
        if option == "maxlines":
            lines.append(f"maxlines = {rng.choice('123')}")
            continue
        lines.append(f"{option}{rng.choice([' = ', '=', ': '])}{value(rng)}")
        for _ in range(rng.choice([0, 0, 1, 2])):
            lines.append(rng.choice(["    " + value(rng), "", "    # comment", "\t" + value(rng)]))
    return lines


def write_filter(rng: random.Random, directory: Path, name: str) -> str:
    """Write filter ``name`` (and its helpers); return the spec a jail would use."""
    (directory / f"{name}-base.conf").write_text(BASE, encoding="utf-8")
    includes = [f"{name}-base.conf"]
    if rng.random() < 0.5:
        helper = [*section(rng, "DEFAULT"), *section(rng, "lt"), *section(rng, "Definition")]
        (directory / f"{name}-inc.conf").write_text("\n".join(helper) + "\n", encoding="utf-8")
        includes.append(f"{name}-inc.conf")
    main = ["[INCLUDES]", "before = " + "\n    ".join(includes)]
    if rng.random() < 0.3:
        main.append("after = missing-on-purpose.local")
    main += section(rng, "Definition")
    for extra in ("Init", "DEFAULT", "lt"):
        if rng.random() < 0.4:
            main += section(rng, extra)
    (directory / f"{name}.conf").write_text("\n".join(main) + "\n", encoding="utf-8")
    if rng.random() < 0.4:
        local = section(rng, "Definition") + (section(rng, "Init") if rng.random() < 0.3 else [])
        (directory / f"{name}.local").write_text("\n".join(local) + "\n", encoding="utf-8")
    options = {
        k: rng.choice(["normal", "x", "v", "<a>", "short", "file"])
        for k in rng.sample(["mode", "a", "b", "logtype"], rng.randint(0, 2))
    }
    return name + (
        "[" + ", ".join(f'{k}="{v}"' for k, v in options.items()) + "]" if options else ""
    )


def cfban_result(spec: str, root: Path) -> dict[str, Any]:
    try:
        return as_dump(spec, root)
    except FilterError as error:
        return {"error": str(error)}


@pytest.mark.parametrize("seed", [1, 2, 4, 17])
def test_random_filters_resolve_like_fail2ban(seed: int, tmp_path: Path) -> None:
    require_path(Path("/etc/fail2ban/filter.d"), "fail2ban's stock filters")
    client = Path(require_program("fail2ban-client"))
    interpreter = client.read_text(encoding="utf-8").splitlines()[0].removeprefix("#!").strip()
    root = tmp_path / "conf"
    shutil.copytree("/etc/fail2ban", root, symlinks=True)
    (root / "jail.d" / "defaults-debian.conf").unlink(missing_ok=True)
    rng = random.Random(seed)
    specs = {f"g{k}": write_filter(rng, root / "filter.d", f"gen{k}") for k in range(40)}
    jail = ["[DEFAULT]", "backend = polling", "action ="]
    for name, spec in specs.items():
        jail += [f"[{name}]", "enabled = true", f"filter = {spec}", f"logpath = {tmp_path}/x.log"]
    (root / "jail.local").write_text("\n".join(jail) + "\n", encoding="utf-8")
    done = subprocess.run(
        [*interpreter.split(), "-c", REFERENCE, str(root), json.dumps(list(specs))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    expected = json.loads(done.stdout)
    resolved = 0
    for name, spec in specs.items():
        mine = cfban_result(spec, root)
        if "error" in expected[name]:
            assert "error" in mine, (spec, expected[name], mine)
        else:
            assert mine == expected[name], spec
            resolved += 1
    assert resolved >= 10  # the generator must keep producing filters that load
