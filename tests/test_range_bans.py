"""Range bans by hand: accepted where Cloudflare can express them, refused with a reason
otherwise, never overlapping Cloudflare's ranges, the allowlist or ignoreip."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfban import allowance
from cfban.clock import FakeClock
from cfban.errors import RefusedError
from tests.cfemu import Emulator
from tests.cfemu.plugin import ServedEmulator
from tests.controls_support import bans_at_cloudflare, host
from tests.test_cli_bans import cfban_env, run_cfban

ACCEPTED = {
    "access-rules": {
        "203.0.113.0/24": "block",
        "198.18.0.0/16": "block",
        "2001:db8:1::/48": "block",
        "2001:db8::/32": "block",
        "2001:db8:5:6::/64": "block",
    },
    "list": {
        "203.0.113.0/25": "list cfban: block",
        "203.0.113.128/30": "list cfban: block",
        "198.18.0.0/15": "list cfban: block",
        "2001:db8:1::/56": "list cfban: block",
    },
}
AR_V4 = "cannot ban {net} with an IP Access Rule: Cloudflare takes IPv4 ranges of /16, /24 only"
AR_V6 = (
    "cannot ban {net} with an IP Access Rule: Cloudflare takes IPv6 ranges of /32, /48, /64 only"
)
LIST_V4 = "cannot ban {net}: a Cloudflare IP list takes IPv4 networks from /8 to /32 only"
LIST_V6 = "cannot ban {net}: a Cloudflare IP list takes IPv6 networks from /12 to /128 only"
REFUSED = {
    "access-rules": {
        "203.0.113.0/25": AR_V4,
        "198.18.0.0/15": AR_V4,
        "2001:db8:1::/56": AR_V6,
    },
    "list": {
        "64.0.0.0/7": LIST_V4,
        "2000::/8": LIST_V6,
    },
}
EVERYWHERE = {
    # Cloudflare's own range (embedded list: 104.16.0.0/13)
    "104.16.0.0/16": "refusing to ban 104.16.0.0/16: it overlaps Cloudflare's own range",
    "192.0.2.0/24": "refusing to ban 192.0.2.0/24: it overlaps 192.0.2.8/29, allowlisted by "
    "ignoreip",
    "198.51.100.0/24": "refusing to ban 198.51.100.0/24: it is on the shared allowlist "
    "(198.51.100.7",
    "10.0.0.0/16": "refusing to ban 10.0.0.0/16: it overlaps 10.0.0.0/8, a private address",
}


@pytest.mark.parametrize("kind", ["access-rules", "list"])
def test_range_bans_accepted_and_refused(tmp_path: Path, kind: str) -> None:
    emu = Emulator(clock=FakeClock())
    with host(tmp_path, emu, "a", kind, ignoreip=["192.0.2.8/29"]) as a:
        allowance.allow(a, "198.51.100.7", seconds=None, note="")
        for net, where in ACCEPTED[kind].items():
            result = a.ban(net, network=True, bantime=3600)
            assert (result.target, result.delivered) == (net, True)
            assert bans_at_cloudflare(emu)[net] == where
        for net, message in {**REFUSED[kind], **EVERYWHERE}.items():
            with pytest.raises(RefusedError) as caught:
                a.ban(net, network=True)
            assert str(caught.value).startswith(message.format(net=net)), str(caught.value)
        assert set(bans_at_cloudflare(emu)) == set(ACCEPTED[kind])
        if kind == "access-rules":
            kinds = {r["configuration"]["target"] for r in emu.access_rules()
                     if r["mode"] != "whitelist"}  # fmt: skip
            assert kinds == {"ip_range"}
        a.unban("203.0.113.0/24" if kind == "access-rules" else "203.0.113.0/25")
        assert len(bans_at_cloudflare(emu)) == len(ACCEPTED[kind]) - 1


def test_a_jail_ban_is_never_a_range(tmp_path: Path) -> None:
    emu = Emulator(clock=FakeClock())
    with host(tmp_path, emu, "a", "list") as a:
        with pytest.raises(RefusedError, match="is not an IP address"):
            a.ban("203.0.113.0/24", jail="web", network=False)


def test_cli_range_bans(tmp_path: Path, cf_server: ServedEmulator) -> None:
    env = cfban_env(tmp_path, cf_server)
    ok = run_cfban(env, "ban", "203.0.113.0/24", "--bantime", "1d")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("banned 203.0.113.0/24 (jail manual, until ")
    assert ok.stdout.endswith("): delivered to Cloudflare\n")
    bad = run_cfban(env, "ban", "203.0.113.0/25")
    assert bad.returncode == 1
    assert bad.stderr.startswith(
        "cfban: error: cannot ban 203.0.113.0/25 with an IP Access Rule: Cloudflare takes "
        "IPv4 ranges of /16, /24 only"
    )
    queued = run_cfban(env, "ban", "198.18.0.0/16", "--background")
    assert queued.returncode == 0, queued.stderr
    assert queued.stdout.startswith("banned 198.18.0.0/16 (jail manual")
