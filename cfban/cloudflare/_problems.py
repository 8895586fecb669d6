"""Why delivery fails, in words a user can act on: an error becomes a :class:`Problem`.

``classify(error)`` names the kind of problem, says what happened and how to fix it. The kinds
are stable strings (metrics labels, the status file, the webhook's JSON):

==================  ==========================================================  ==========
kind                what it means                                               persistent
==================  ==========================================================  ==========
``list_full``       the account's IP lists hold their maximum                   yes
``token_invalid``   the token is mistyped, expired or revoked                   yes
``permission``      the token lacks a permission (it was edited)                yes
``not_found``       the list, a rule, the zone or the account is gone           yes
``budget_spent``    cfban's own share of the request budget is used up          no
``rate_limited``    Cloudflare answered 429: the whole account must wait        no
``unreachable``     network errors, timeouts, Cloudflare outages                no
``refused``         Cloudflare refused the request for another reason           no
``other``           anything else (a bug, a local problem)                      no
==================  ==========================================================  ==========

A *persistent* problem does not pass by waiting: cfban retries it only a few times a minute
(see :mod:`cfban.cloudflare._stall`) so a revoked token or a full list never burns the
request budget; any problem that repeats three times in a row slows retries too.
"""

from __future__ import annotations

from dataclasses import dataclass

from cfban.cloudflare._answers import NotFoundError, RetryLaterError
from cfban.cloudflare._listops import ListFullError
from cfban.errors import AuthError, CfbanError, CloudflareError, TransportError

KINDS = (
    "list_full",
    "token_invalid",
    "permission",
    "not_found",
    "budget_spent",
    "rate_limited",
    "unreachable",
    "refused",
    "other",
)
PERSISTENT = frozenset({"list_full", "token_invalid", "permission", "not_found"})
_TOKEN_CODES = frozenset({1000, 6003, 6111, 9103})


@dataclass(frozen=True)
class Problem:
    """One delivery problem: its ``kind`` (see the module docstring), the error ``message``
    and the ``fix`` a user can apply."""

    kind: str
    message: str
    fix: str

    @property
    def persistent(self) -> bool:
        return self.kind in PERSISTENT


def classify(error: BaseException) -> Problem:
    """The problem ``error`` stands for."""
    message = error.message if isinstance(error, CfbanError) else str(error)
    hint = error.hint if isinstance(error, CfbanError) else None
    kind, fix = _kind(error)
    return Problem(kind, message, hint if hint and kind in ("other", "refused") else fix)


def _kind(error: BaseException) -> tuple[str, str]:
    if isinstance(error, ListFullError):
        return "list_full", (
            "the list is full: shorten bantime, remove stale entries with `cfban sync`, or set "
            '[cloudflare] on_full = "evict" (make room) or "spill" (use IP Access Rules)'
        )
    if isinstance(error, AuthError):
        if error.code in _TOKEN_CODES or error.status == 401:
            return "token_invalid", (
                "the API token was rejected (mistyped, expired or revoked): create a new one "
                "under My Profile > API Tokens and set CLOUDFLARE_API_TOKEN or api_token_file"
            )
        return "permission", (
            f"{error.hint or 'give the token the permission it needs'}; `cfban check` lists "
            "the permissions cfban uses"
        )
    if isinstance(error, NotFoundError):
        return "not_found", (
            "the list, its custom rule, the zone or the account is gone: cfban makes the list "
            "and its rule again on the next try; check account_id/zone_id if it persists "
            "(`cfban check`)"
        )
    if isinstance(error, RetryLaterError):
        if error.status == 429:
            return "rate_limited", (
                "Cloudflare rate-limited the account (1,200 requests per 5 minutes, shared "
                "with the dashboard and other tools): cfban waits as asked; lower "
                "[cloudflare] budget_share if other tools need more"
            )
        return "budget_spent", (
            "cfban's share of the request budget is spent: it sends again when the window "
            "allows; raise [cloudflare] budget_share if this happens often"
        )
    if isinstance(error, TransportError) or (
        isinstance(error, CloudflareError) and (error.status or 0) >= 500
    ):
        return "unreachable", (
            "Cloudflare cannot be reached or is failing: cfban retries with backoff; check "
            "the network and [cloudflare] api_url"
        )
    if isinstance(error, CloudflareError):
        return "refused", "see the message; `cfban check` tests the token and the setup"
    return "other", "see cfban's log for details"
