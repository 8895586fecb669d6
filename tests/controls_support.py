"""Helpers for the tests of the operator's controls (actions, allowlist, range bans)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfban.bans import BanService
from cfban.clock import FakeClock
from cfban.config import Settings
from tests.cfemu import Emulator

IP = "198.51.100.7"
WEB = {"filter": "nginx-probes", "action": "managed_challenge", "escalate_after": 1,
       "bantime": 600}  # fmt: skip


def host(
    tmp_path: Path,
    emu: Emulator,
    name: str,
    kind: str,
    *,
    cloudflare: dict[str, Any] | None = None,
    **top: Any,
) -> BanService:
    """A host's ban service on ``emu`` with the state in ``tmp_path/name``."""
    settings = Settings.model_validate(
        {
            "state_dir": str(tmp_path / name),
            "realip": {"allow_test_nets": True},
            "cloudflare": {"api_token": emu.token, "zone_id": emu.zone_id,
                           "account_id": emu.account_id, "backend": kind, **(cloudflare or {})},
            "jails": {"web": WEB},
            **top,
        }
    )  # fmt: skip
    assert isinstance(emu.clock, FakeClock)
    return BanService(settings, clock=emu.clock, transport=emu.transport())


def advance(emu: Emulator, seconds: float) -> None:
    clock = emu.clock
    assert isinstance(clock, FakeClock)
    clock.advance(seconds)


def bans_at_cloudflare(emu: Emulator) -> dict[str, str]:
    """Every ban entry at the emulator, whatever holds it: target → what it does there
    (an access rule's mode, or the action of the custom rule of the list it is in)."""
    found: dict[str, str] = {}
    for rule in emu.access_rules():
        if rule["mode"] != "whitelist":
            found[rule["configuration"]["value"]] = rule["mode"]
    actions = {}
    for rule in emu.custom_rules():
        expression = rule["expression"]
        if expression.startswith("(ip.src in $"):
            actions[expression[len("(ip.src in $") : -1]] = rule["action"]
    for lst in emu.lists():
        for ip in emu.list_ips(lst["name"]):
            found[ip] = f"list {lst['name']}: {actions.get(lst['name'], 'no rule')}"
    return found


def allowed_at_cloudflare(emu: Emulator) -> list[str]:
    return sorted(
        r["configuration"]["value"] for r in emu.access_rules() if r["mode"] == "whitelist"
    )
