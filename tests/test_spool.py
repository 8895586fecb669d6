"""The spool between fail2ban's Python action and cfban: format, journals, claims, bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cfban._resources import jails_dir
from cfban.intake.spool import done, read_entries, write_entry
from tests.conftest import require_program

REQUEST = {"v": 1, "op": "ban", "ip": "203.0.113.5", "jail": "j", "expires_at": 2e9, "time": 1.0}


def test_single_request_round_trip(tmp_path: Path) -> None:
    write_entry(tmp_path, op="ban", ip="203.0.113.1", jail="j", expires_at=None)
    write_entry(tmp_path, op="unban", ip="203.0.113.1", jail="j")
    entries = list(read_entries(tmp_path))
    assert [(e.op, e.ip, e.expires_at) for e in entries] == [
        ("ban", "203.0.113.1", None),
        ("unban", "203.0.113.1", None),
    ]
    done(entries)
    assert list(read_entries(tmp_path)) == []


def test_journal_complete_lines_only_and_bad_lines_skipped(tmp_path: Path) -> None:
    journal = tmp_path / "00000000000000000001-1-000000.jsonl"
    lines = [
        json.dumps(REQUEST),
        "{not json",
        json.dumps(dict(REQUEST, op="explode")),
        json.dumps(dict(REQUEST, ip="203.0.113.6")),
    ]
    journal.write_text("\n".join(lines) + "\n" + json.dumps(dict(REQUEST, ip="9.9.9.9"))[:20])
    entries = list(read_entries(tmp_path))
    assert [e.ip for e in entries] == ["203.0.113.5", "203.0.113.6"]
    assert not journal.exists()  # claimed: a writer that appends now starts a new journal
    done(entries)
    assert list(tmp_path.iterdir()) == []


def test_malformed_single_request_is_quarantined(tmp_path: Path) -> None:
    (tmp_path / "00000000000000000001-1-000000.json").write_text('{"v": 2}')
    assert list(read_entries(tmp_path)) == []
    assert (tmp_path / "bad" / "00000000000000000001-1-000000.json").exists()


@pytest.mark.real
def test_fail2ban_python_action_writes_what_cfban_reads(tmp_path: Path) -> None:
    """The action file, loaded by fail2ban's own Python, as fail2ban-server would."""
    require_program("fail2ban-server")
    script = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("cfban_action", {str(jails_dir() / "action.d" / "cfban.py")!r})
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
class Jail: name = "nginx-probes"
action = module.Action(Jail(), "cfban", state_dir={str(tmp_path)!r}, cfban="/bin/true")
action.ban({{"ip": "203.0.113.9", "bantime": 600, "time": 1800000000.0}})
action.ban({{"ip": "2001:db8::1", "bantime": -1, "time": 1800000000.0}})
action.unban({{"ip": "203.0.113.9"}})
assert action.flush() is True and action.norestored
"""  # noqa: E501
    out = subprocess.run(
        ["/usr/bin/python3", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    entries = list(read_entries(tmp_path / "spool"))
    assert [(e.op, e.ip, e.jail, e.expires_at) for e in entries] == [
        ("ban", "203.0.113.9", "nginx-probes", 1800000600.0),
        ("ban", "2001:db8::1", "nginx-probes", None),
        ("unban", "203.0.113.9", "nginx-probes", None),
    ]


@pytest.mark.real
def test_fail2ban_python_action_logs_a_failing_deliverer(tmp_path: Path) -> None:
    """A deliverer that exits with an error (a bad configuration: 78) is named in fail2ban's
    log with its message, instead of vanishing with its output."""
    require_program("fail2ban-server")
    fake = tmp_path / "fake-cfban"
    fake.write_text(
        "#!/bin/sh\necho 'cfban: error: invalid configuration in /x: nope' >&2\nexit 78\n"
    )
    fake.chmod(0o755)
    script = f"""
import importlib.util, logging, sys, time
logging.basicConfig(stream=sys.stderr, level=logging.INFO)
spec = importlib.util.spec_from_file_location("cfban_action", {str(jails_dir() / "action.d" / "cfban.py")!r})
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
class Jail: name = "nginx-probes"
action = module.Action(Jail(), "cfban", state_dir={str(tmp_path)!r}, cfban={str(fake)!r})
action.ban({{"ip": "203.0.113.9", "bantime": 600, "time": 1800000000.0}})
action._child.wait(timeout=30)
action.ban({{"ip": "203.0.113.10", "bantime": 600, "time": 1800000000.0}})
action._child.wait(timeout=30)
"""  # noqa: E501
    out = subprocess.run(
        ["/usr/bin/python3", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "cfban deliverer exited with 78: cfban: error: invalid configuration" in out.stderr
