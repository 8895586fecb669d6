"""A stateful, faithful emulator of the Cloudflare API v4 surface cfban uses.

Facts come from ``shared/cloudflare-api.md``; where that marks a behaviour UNVERIFIED, the
emulator picks the plausible one and says so in a comment next to the code.

Fixtures (``tests/cfemu/plugin.py``, enabled in ``tests/conftest.py``)
----------------------------------------------------------------------
* ``cf_emulator`` — a fresh :class:`Emulator` per test, on a ``cfban.clock.FakeClock``; main
  account ``cf_emulator.account_id`` (``acc0…``, 32 hex), zone ``cf_emulator.zone_id``
  (``example.com``, Free plan), ``cf_emulator.token`` (user token, every permission).
* ``cf_server`` — that emulator over real HTTP on 127.0.0.1, a ``plugin.ServedEmulator``:
  ``.base_url`` (``http://127.0.0.1:PORT/client/v4``), ``.emulator``, ``.token``, ``.env()``
  (``CLOUDFLARE_API_TOKEN`` + ``CFBAN_API_URL`` for a cfban subprocess).
* Plans: Free by default (1 list, 10,000 items, 5 custom rules, no country blocks); other
  zones/plans via ``Emulator(plan="pro")`` or ``emu.add_zone(plan=...)`` — list quotas follow
  the highest plan in the account.

In-process::

    client = httpx.Client(base_url=BASE_URL, transport=httpx.MockTransport(emu.handler),
                          headers={"Authorization": f"Bearer {emu.token}"})
    # or: emu.client();  or with pytest-httpx: httpx_mock.add_callback(emu.handler)

``emu.handler(request) -> httpx.Response`` strips ``/client/v4`` from the path whatever the
host, so ``BASE_URL`` (https://api.cloudflare.com/client/v4) works. Standalone:
``python -m tests.cfemu --port N --token T`` (prints ``CFEMU_URL=…``; JSON summary on SIGTERM).

What is emulated
----------------
Envelope (``success/errors/messages/result/result_info``); auth (missing/malformed header →
400/6003 with ``error_chain`` 6111; unknown or inactive token → 401/1000 "Invalid API Token";
missing permission, or a zone/account outside the token → 403/10000 "Authentication error";
malformed object id → 400/7003+7000; unknown path → 400/7003+7000; bad JSON → 400/6007);
``/user/tokens/verify`` (rejects account tokens) and ``/accounts/{id}/tokens/verify``;
``/zones``, ``/zones/{id}``, ``/accounts``, ``/accounts/{id}``, ``/ips`` (no auth).
IP Access Rules at zone and account level (list with page pagination, ``mode``,
``configuration.target``, ``configuration.value`` (exact, address-aware), ``notes``
(case-insensitive substring), ``match=all|any``, ``order``/``direction``; create with target
validation; duplicate → 400/10009; PATCH mode/notes; DELETE with or without ``cascade``).
Lists (create/get/list/update/delete; items with cursor pages and prefix ``search``;
POST/PUT bare arrays, DELETE ``{"items":[{"id"}]}``; async bulk operations; one pending per
account → 429; 10028/10035/10056/10058; quotas). Rulesets (custom-phase entry point: GET 404/10003
until it exists, PUT replaces all, POST/PATCH/DELETE rules return the whole ruleset and bump
``version``; a PUT rule carrying an existing rule's ``id`` keeps it; ``POST /zones/{id}/rulesets``
creates the entry point; ``$list`` references must exist; 4,096-character expressions; plan rule
counts; ``log`` Enterprise only). Account-level rulesets too (Account WAF or Account Rulesets).
Rate limit: ``rate_limit`` requests per ``rate_window`` seconds per token (1,200 / 300 s),
then every call blocked for a window: 429/971 with ``Retry-After``; ``Ratelimit`` and
``Ratelimit-Policy`` headers on every authenticated answer.

Permissions (pass to ``emu.add_token(permissions=[...])``)
----------------------------------------------------------
``ZONE_FIREWALL_READ/EDIT`` (zone access rules), ``ACCOUNT_ACCESS_RULES_READ/EDIT``,
``ACCOUNT_LISTS_READ/EDIT`` (lists, items, bulk operations), ``ZONE_WAF_READ/EDIT`` (zone custom
rules), ``ACCOUNT_WAF_*``/``ACCOUNT_RULESETS_*``, ``ZONE_READ``. Edit implies Read.
``add_token(owner="account")`` makes an account-owned token.

Options (``emu.options``, see ``Options``)
------------------------------------------
``bulk_polls`` (default 1: first status poll ``running``, second ``completed``; 0 = first poll
completes), ``bulk_seconds`` (operations also complete after this much clock time; with the
fake clock that means ``emu.advance(s)`` or a client sleeping on ``emu.clock``),
``fail_operations``/``fail_error`` (next N operations end ``failed``), ``legacy_v6_items``,
``cidr_singles`` (items echoed ``1.2.3.4/32``), ``zone_lists_account_rules``,
``items_per_page``, ``write_status``.

Faults (``emu.faults``, a :class:`FaultPlan`)
---------------------------------------------
::

    emu.faults.sequence([Fault.server_error(502, html=True), None, Fault.dropped()],
                        method="POST", path="/accounts/*/rules/lists/*/items")
    emu.faults.randomly(0.2, [Fault.server_error(503), Fault.rate_limited(retry_after=None)])
    emu.faults.always(Fault.applied_then_dropped(), method="POST", times=1)
    emu.faults.seed(42); emu.faults.clear()

Kinds: ``server_error(status, html=False)`` (5xx JSON or HTML), ``rate_limited(retry_after=60,
html=True)`` (HTML or JSON-971 429; ``retry_after=None`` = no header), ``slow(seconds)``,
``dropped()``, ``timeout(seconds)``, ``applied_then_dropped()``. Only ``applied_then_dropped``
and ``slow`` let the request change state. In-process, a drop raises
``httpx.RemoteProtocolError`` and a timeout ``httpx.ReadTimeout`` (a ``slow`` fault at least
as long as the request's read timeout too, after applying it); over HTTP the socket is closed
without an answer. Paths are patterns: ``*``/``{name}`` = one segment, ``**`` = the rest.

Request log and state
---------------------
``emu.log.entries`` (``LoggedRequest(method, path, query, status, fault, applied)``, path
without ``/client/v4``; status None = no answer), ``emu.count("POST",
"/zones/{zone_id}/firewall/access_rules/rules")``, ``emu.log.clear()``. Seeding ("someone
else's" objects, written directly): ``seed_access_rule``, ``seed_list``, ``seed_items``,
``seed_custom_rule``, ``add_zone``, ``add_account``, ``add_token``. Inspection:
``access_rules()``, ``lists()``, ``list_items(name)``, ``list_ips(name)``, ``custom_rules()``,
``snapshot()``, ``summary()``.
"""

from __future__ import annotations

from ._emulator import (
    BASE_PATH,
    BASE_URL,
    DEFAULT_ACCOUNT_ID,
    DEFAULT_TOKEN,
    DEFAULT_ZONE_ID,
    Emulator,
)
from ._faults import Fault, FaultPlan
from ._log import LoggedRequest, RequestLog
from ._router import Options
from ._routes_misc import IPV4_CIDRS, IPV6_CIDRS
from ._server import serve
from ._state import (
    ACCOUNT_ACCESS_RULES_EDIT,
    ACCOUNT_ACCESS_RULES_READ,
    ACCOUNT_LISTS_EDIT,
    ACCOUNT_LISTS_READ,
    ACCOUNT_RULESETS_EDIT,
    ACCOUNT_RULESETS_READ,
    ACCOUNT_WAF_EDIT,
    ACCOUNT_WAF_READ,
    ALL_PERMISSIONS,
    ZONE_FIREWALL_EDIT,
    ZONE_FIREWALL_READ,
    ZONE_READ,
    ZONE_WAF_EDIT,
    ZONE_WAF_READ,
    Token,
)

__all__ = [
    "ACCOUNT_ACCESS_RULES_EDIT",
    "ACCOUNT_ACCESS_RULES_READ",
    "ACCOUNT_LISTS_EDIT",
    "ACCOUNT_LISTS_READ",
    "ACCOUNT_RULESETS_EDIT",
    "ACCOUNT_RULESETS_READ",
    "ACCOUNT_WAF_EDIT",
    "ACCOUNT_WAF_READ",
    "ALL_PERMISSIONS",
    "BASE_PATH",
    "BASE_URL",
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_TOKEN",
    "DEFAULT_ZONE_ID",
    "IPV4_CIDRS",
    "IPV6_CIDRS",
    "ZONE_FIREWALL_EDIT",
    "ZONE_FIREWALL_READ",
    "ZONE_READ",
    "ZONE_WAF_EDIT",
    "ZONE_WAF_READ",
    "Emulator",
    "Fault",
    "FaultPlan",
    "LoggedRequest",
    "Options",
    "RequestLog",
    "Token",
    "serve",
]
