"""Routing: path templates to handlers, the per-request context, and the emulator options."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._envelope import ApiError, Reply, no_route, validation
from ._state import IpList, State, Token, Zone, rfc3339


@dataclass
class Options:
    """Behaviour switches; change them on ``emulator.options`` at any time.

    ``bulk_polls``: status polls answered ``pending``/``running`` before an operation completes
    (0 = the first poll sees ``completed``). ``bulk_seconds``: an operation also completes once
    this much clock time has passed (None = only polls complete it).
    ``legacy_v6_items``: the pre-2025 list rule (IPv6 /12–/64 only, error 10035 otherwise).
    ``cidr_singles``: echo single list addresses as ``a.b.c.d/32`` instead of bare.
    ``zone_lists_account_rules``: a zone access-rule listing includes the account's rules
    (old docs say inherited rules are listed; UNVERIFIED), which the zone endpoint cannot edit.
    ``items_per_page``: default ``per_page`` for list items (UNVERIFIED in the doc).
    ``write_status``: HTTP status of a successful bulk write (the spec says 200, docs 201).
    ``fail_operations``: the next N bulk operations end ``failed`` with ``fail_error``.
    ``patch_requires_configuration``: an access-rule PATCH must carry ``mode`` and the rule's
    unchanged ``configuration`` (the published schema); off, either may be left out.
    """

    bulk_polls: int = 1
    bulk_seconds: float | None = 2.0
    legacy_v6_items: bool = False
    cidr_singles: bool = False
    zone_lists_account_rules: bool = True
    items_per_page: int = 25
    write_status: int = 200
    fail_operations: int = 0
    fail_error: str = "internal error while applying the operation"
    patch_requires_configuration: bool = True


Handler = Callable[["Ctx"], Reply]


@dataclass
class Ctx:
    """One request, as a handler sees it."""

    state: State
    options: Options
    now: float
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, list[str]]
    body: bytes
    token: Token | None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def stamp(self) -> str:
        return rfc3339(self.now)

    def q(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        """The body as JSON; 400/6007 when it does not parse (code as commonly reported)."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            raise ApiError(400, 6007, "Malformed JSON in request body") from None

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise validation("Request body must be a JSON object", 6007)
        return data

    @property
    def scope(self) -> tuple[str, str]:
        """``("zone", zone_id)`` or ``("account", account_id)`` for scope-generic routes."""
        if "zone_id" in self.params:
            return "zone", self.params["zone_id"]
        return "account", self.params["account_id"]

    @property
    def zone(self) -> Zone:
        return self.state.zones[self.params["zone_id"]]

    @property
    def account_id(self) -> str:
        """The account of this request (a zone request's owning account)."""
        if "account_id" in self.params:
            return self.params["account_id"]
        return self.zone.account_id

    def ip_list(self) -> IpList:
        found = self.state.lists.get(self.params["list_id"])
        if found is None or found.account_id != self.account_id:
            raise ApiError(404, 10001, "list not found")  # code UNVERIFIED
        return found

    def page_params(self, default: int, maximum: int) -> tuple[int, int]:
        """``page`` and ``per_page``; out-of-range values are a 400 (the server's real answer
        is UNVERIFIED, and rejecting catches client bugs)."""
        try:
            page = int(self.q("page") or 1)
            per_page = int(self.q("per_page") or default)
        except ValueError:
            raise validation("page and per_page must be integers") from None
        if page < 1 or not 1 <= per_page <= maximum:
            raise validation(f"per_page must be between 1 and {maximum}; page at least 1")
        return page, per_page


def page_info(page: int, per_page: int, total: int) -> dict[str, int]:
    return {
        "page": page,
        "per_page": per_page,
        "count": max(0, min(per_page, total - (page - 1) * per_page)),
        "total_count": total,
        "total_pages": (total + per_page - 1) // per_page,
    }


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    regex: re.Pattern[str]
    handler: Handler
    permissions: tuple[str, ...]
    public: bool


class Router:
    """Path templates (``{name}`` = one segment) to handlers, with their permissions."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(
        self, method: str, template: str, *permissions: str, public: bool = False
    ) -> Callable[[Handler], Handler]:
        """Register a handler; the token needs any one of ``permissions`` (none: any token)."""
        regex = re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "/?")

        def register(handler: Handler) -> Handler:
            self.routes.append(Route(method, template, regex, handler, permissions, public))
            return handler

        return register

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route for this request; 7003/7000 for an unknown path, 405 for a wrong method
        (its code, 10405, is UNVERIFIED)."""
        path_known = False
        for route in self.routes:
            found = route.regex.fullmatch(path)
            if found is None:
                continue
            path_known = True
            if route.method == method:
                return route, found.groupdict()
        if path_known:
            raise ApiError(405, 10405, "Method not allowed")
        raise no_route(path)
