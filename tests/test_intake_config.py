"""One configuration schema: a configuration the CLI rejects is rejected by every way in —
the CLI, the hook (also after it cached a good configuration), the background deliverer that
fail2ban's Python action starts, the daemon — with the same message and exit 78."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfban.errors import EXIT_CONFIG
from tests.support.intake import cfban, cfban_process, clean_env

GOOD = '[realip]\nallow_test_nets = true\n[jails.j]\nfilter = "nginx-probes"\nlogpath = ["x.log"]\n'

BAD: dict[str, str] = {
    "ipv6_prefix too small": "[cloudflare]\nipv6_prefix = 20\n",
    "unknown top-level key": "colour = 'blue'\n",
    "unknown cloudflare key": "[cloudflare]\nzone = 'x'\n",
    "unknown backend": "[cloudflare]\nbackend = 'nope'\n",
    "unknown mode": "[cloudflare]\nmode = 'deny'\n",
    "no requests per window": "[cloudflare]\nrequests_per_window = 0\n",
    "zero timeout": "[cloudflare]\ntimeout = 0\n",
    "negative deadline": "[cloudflare]\ndeliver_deadline = -1\n",
    "zero max_queue_age": "[cloudflare]\nmax_queue_age = 0\n",
    "bad window": "[cloudflare]\nwindow_seconds = 'fast'\n",
    "bad ignoreip": "ignoreip = ['nope']\n",
    "bad log_format": "log_format = 'xml'\n",
    "cloudflare not a table": "cloudflare = 5\n",
    "jails not a table": "jails = [1]\n",
    "jail without filter": "[jails.k]\nlogpath = ['x.log']\n",
    "jail maxretry 0": '[jails.k]\nfilter = "f"\nmaxretry = 0\n',
    "jail bad bantime": '[jails.k]\nfilter = "f"\nbantime = "soon"\n',
    "jail bad findtime": '[jails.k]\nfilter = "f"\nfindtime = "later"\n',
    "jail factor below 1": '[jails.k]\nfilter = "f"\nbantime_factor = 0.5\n',
    "jail bad ignoreip": '[jails.k]\nfilter = "f"\nignoreip = ["1.2.3.4/99"]\n',
    "bad trusted proxy": "[realip.x]\n",
    "bad realip header type": "[realip2]\nheader = 5\n",
    "recidive of one": "[recidive]\nbans = 1\n",
    "recidive findtime 0": "[recidive]\nbans = 3\nfindtime = 0\n",
    "not TOML": "state_dir = \n",
    "not UTF-8": "\udcff",
}

WAYS = {
    "cli": ["ban", "203.0.113.5", "--jail", "j"],
    "hook": ["ban", "203.0.113.5", "--jail", "j", "--bantime", "600", "--background"],
    "deliverer": ["deliver", "--linger", "0"],
    "daemon": ["watch", "--exit-idle", "0"],
}


def _write(path: Path, text: str) -> None:
    path.write_bytes(text.encode("utf-8", "surrogateescape"))


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_configuration_is_rejected_alike_everywhere(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in ("CFBAN_CONFIG", "CLOUDFLARE_API_TOKEN", "CFBAN_API_TOKEN_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CFBAN_STATE_DIR", str(tmp_path / "state"))
    conf = tmp_path / "cfban.toml"
    _write(conf, GOOD)
    assert cfban(["--config", str(conf), "list"]) == 0  # the hook's rules are now cached
    capsys.readouterr()
    _write(conf, BAD[case])
    messages: dict[str, str] = {}
    for way, argv in WAYS.items():
        code = cfban(["--config", str(conf), *argv])
        err = capsys.readouterr().err
        assert code == EXIT_CONFIG, (way, err)
        messages[way] = err
    assert messages["cli"].startswith("cfban: error: ")
    assert len(set(messages.values())) == 1, messages


def test_the_hook_as_a_process_rejects_what_it_once_accepted(tmp_path: Path) -> None:
    """The report's case: ``ipv6_prefix = 20`` and an unknown key, after a good start."""
    conf = tmp_path / "cfban.toml"
    env = clean_env(CFBAN_STATE_DIR=str(tmp_path / "state"))
    _write(conf, GOOD)
    hook = ("--config", str(conf), "ban", "2600:1f18::1", "--jail", "j", "--background")
    first = cfban_process(*hook, env=env)
    assert first.returncode == 0, first.stderr
    _write(conf, GOOD + "[cloudflare]\nipv6_prefix = 20\nfrobnicate = 1\n")
    cli = cfban_process("--config", str(conf), "ban", "2600:1f18::1", "--jail", "j", env=env)
    again = cfban_process(*hook, env=env)
    assert cli.returncode == again.returncode == EXIT_CONFIG
    assert again.stderr == cli.stderr and "ipv6_prefix" in cli.stderr
    assert "2600:1000::/20" not in again.stdout + again.stderr


def test_an_unreadable_token_file_is_rejected_by_the_hook_too(tmp_path: Path) -> None:
    conf = tmp_path / "cfban.toml"
    token = tmp_path / "token"
    token.write_text("a-token\n")
    token.chmod(0o600)
    _write(conf, GOOD + '[cloudflare]\napi_token_file = "token"\napi_url = "http://127.0.0.1:9"\n')
    env = clean_env(CFBAN_STATE_DIR=str(tmp_path / "state"))
    hook = ("--config", str(conf), "ban", "203.0.113.9", "--jail", "j", "--background")
    assert cfban_process("--config", str(conf), "list", env=env).returncode == 0
    token.write_text("")  # emptied: the configuration no longer yields a token
    cli = cfban_process("--config", str(conf), "ban", "203.0.113.9", "--jail", "j", env=env)
    again = cfban_process(*hook, env=env)
    assert cli.returncode == again.returncode == EXIT_CONFIG
    assert again.stderr == cli.stderr and "is empty" in cli.stderr
