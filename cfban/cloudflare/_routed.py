"""The list backend when bans carry different actions: each action where it applies.

A WAF custom rule has one action, so the list backend keeps one IP list per action in use,
each with its own rule: the list named ``[cloudflare] list_name`` for ``[cloudflare] mode``
(the list cfban always had) and ``<list_name>_<action>`` for any other (``cfban_block``,
``cfban_managed_challenge``...). Where the plan allows a single custom list
(``[cloudflare] max_lists = 1``, Cloudflare's Free plan), that list keeps the ``mode`` bans and
the other actions go into IP Access Rules, which take every mode on every plan.

:class:`RoutedBackend` sends each entry to the backend of its action (see
:func:`cfban.rules.mechanism`) and asks every one of them on remove, listing, setup and check:
an entry whose action changed (an escalation) may sit in two places until it is removed.
While both stand, the block wins: a challenge rule lets a client that passed it on to the
rules after it, the block among them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from cfban.cloudflare._backend import Backend, BanEntry, RemoteEntry


class RoutedBackend:
    """Several backends behind one, chosen by each entry's action."""

    name = "list"

    def __init__(self, routes: dict[str, Backend], fallback: str) -> None:
        self._routes = routes
        self._fallback = fallback
        self._backends: list[Backend] = []
        for backend in routes.values():
            if all(backend is not b for b in self._backends):
                self._backends.append(backend)

    def __repr__(self) -> str:
        return f"RoutedBackend({', '.join(sorted(self._routes))})"

    def close(self) -> None:
        for backend in self._backends:
            close = getattr(backend, "close", None)
            if callable(close):
                close()

    def backend_for(self, action: str) -> Backend:
        return self._routes.get(action) or self._routes[self._fallback]

    def add(self, entries: Sequence[BanEntry]) -> dict[str, str]:
        groups: dict[int, tuple[Backend, list[BanEntry]]] = {}
        for entry in entries:
            backend = self.backend_for(entry.action or self._fallback)
            groups.setdefault(id(backend), (backend, []))[1].append(entry)
        refs: dict[str, str] = {}
        for backend, group in groups.values():
            refs.update(backend.add(group))
        return refs

    def remove(
        self, targets: Sequence[tuple[str, str | None]], *, not_after: float | None
    ) -> list[str]:
        # A ref names an entry of one of the backends only: let each look its own up.
        plain = [(target, None) for target, _ in targets]
        removed = {target for target, _ in targets}
        for backend in self._backends:
            removed &= set(backend.remove(plain, not_after=not_after))
        return [target for target, _ in targets if target in removed]

    def list_owned(self) -> list[RemoteEntry]:
        found: list[RemoteEntry] = []
        lists = {id(b): action for action, b in self._routes.items() if b.name == "list"}
        for backend in self._backends:
            action = lists.get(id(backend))
            for entry in backend.list_owned():
                # a list's custom rule decides what its items do
                found.append(entry if action is None else replace(entry, action=action))
        return found

    def setup(self) -> list[str]:
        lines: list[str] = []
        for backend in self._backends:
            lines.extend(backend.setup())
        return lines

    def check(self) -> list[tuple[str, bool, str]]:
        checks: list[tuple[str, bool, str]] = []
        seen: set[tuple[str, bool, str]] = set()
        for backend in self._backends:
            for item in backend.check():
                if item[0] == "token" and any(c[0] == "token" for c in checks):
                    continue  # one token behind them all
                if item not in seen:
                    seen.add(item)
                    checks.append(item)
        return checks
