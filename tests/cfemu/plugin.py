"""pytest fixtures for the Cloudflare emulator (enabled from ``tests/conftest.py``).

``cf_emulator``
    A fresh :class:`~tests.cfemu.Emulator` per test on a ``cfban.clock.FakeClock``
    (``cf_emulator.clock``): account ``cf_emulator.account_id`` (``acc0…``, 32 hex), zone
    ``cf_emulator.zone_id`` (``example.com``, Free plan), and ``cf_emulator.token``, a user token
    with every permission. Use ``cf_emulator.handler`` with ``httpx.MockTransport`` or as a
    pytest-httpx callback, or ``cf_emulator.client()``.
``cf_server``
    The same emulator served over HTTP on ``127.0.0.1``: a :class:`ServedEmulator` with
    ``.base_url`` (``http://127.0.0.1:PORT/client/v4``), ``.emulator``, ``.token`` and ``.env()``
    (``CLOUDFLARE_API_TOKEN`` and ``CFBAN_API_URL`` for a cfban subprocess).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cfban.clock import FakeClock

from ._emulator import Emulator
from ._server import serve


@dataclass(frozen=True)
class ServedEmulator:
    """An emulator reachable over HTTP."""

    base_url: str
    emulator: Emulator
    token: str

    def env(self) -> dict[str, str]:
        """Environment variables that point cfban at this server."""
        return {"CLOUDFLARE_API_TOKEN": self.token, "CFBAN_API_URL": self.base_url}


@pytest.fixture
def cf_emulator() -> Emulator:
    """A fresh emulator on a fake clock (see the module docstring)."""
    return Emulator(clock=FakeClock())


@pytest.fixture
def cf_server(cf_emulator: Emulator) -> Iterator[ServedEmulator]:
    """``cf_emulator`` served on loopback for the duration of the test."""
    with serve(cf_emulator) as base_url:
        yield ServedEmulator(base_url, cf_emulator, cf_emulator.token)
