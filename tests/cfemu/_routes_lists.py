"""Account IP Lists, their items and asynchronous bulk operations (cloudflare-api.md §3).

Item writes (POST add/upsert, PUT replace, DELETE by id) are validated at once and then land
asynchronously: they return ``operation_id``, and the change is applied when the operation
completes (see ``Options.bulk_polls`` / ``bulk_seconds``). One pending operation per account;
another write meanwhile gets 429. Quota overflow surfaces as a *failed* operation.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from ._addr import IPNetwork, item_display, list_item_network, sort_key
from ._envelope import ApiError, Reply, ok, validation
from ._router import Ctx, Options, Router
from ._state import (
    ACCOUNT_LISTS_EDIT,
    ACCOUNT_LISTS_READ,
    LIST_COUNT,
    LIST_ITEMS,
    BulkOperation,
    IpList,
    ListItem,
    State,
    rfc3339,
)

_BASE = "/accounts/{account_id}/rules/lists"
LIST_NAME = re.compile(r"[a-z0-9_]{1,50}")
LIST_REF = re.compile(r"\$([A-Za-z0-9_.]+)")
KINDS = ("ip", "redirect", "hostname", "asn")
ITEM_KEYS = ("ip", "redirect", "hostname", "asn")
FULL_ERROR = "This list is at the maximum number of items"


def register(router: Router) -> None:
    router.add("GET", _BASE, ACCOUNT_LISTS_READ)(get_lists)
    router.add("POST", _BASE, ACCOUNT_LISTS_EDIT)(create_list)
    router.add("GET", _BASE + "/bulk_operations/{operation_id}", ACCOUNT_LISTS_READ)(get_op)
    router.add("GET", _BASE + "/{list_id}", ACCOUNT_LISTS_READ)(get_list)
    router.add("PUT", _BASE + "/{list_id}", ACCOUNT_LISTS_EDIT)(update_list)
    router.add("DELETE", _BASE + "/{list_id}", ACCOUNT_LISTS_EDIT)(delete_list)
    router.add("GET", _BASE + "/{list_id}/items", ACCOUNT_LISTS_READ)(get_items)
    router.add("POST", _BASE + "/{list_id}/items", ACCOUNT_LISTS_EDIT)(add_items)
    router.add("PUT", _BASE + "/{list_id}/items", ACCOUNT_LISTS_EDIT)(replace_items)
    router.add("DELETE", _BASE + "/{list_id}/items", ACCOUNT_LISTS_EDIT)(delete_items)
    router.add("GET", _BASE + "/{list_id}/items/{item_id}", ACCOUNT_LISTS_READ)(get_item)


def referencing_rules(state: State, account_id: str, name: str) -> int:
    """Rules (enabled or not) in the account's rulesets whose expression names ``$name``."""
    return sum(
        1
        for rs in state.rulesets_of_account(account_id)
        for rule in rs.rules
        if name in LIST_REF.findall(rule.expression)
    )


def list_json(ctx: Ctx, lst: IpList) -> dict[str, Any]:
    return lst.to_json(referencing_rules(ctx.state, lst.account_id, lst.name))


def get_lists(ctx: Ctx) -> Reply:
    account = ctx.account_id
    found = [list_json(ctx, x) for x in ctx.state.lists.values() if x.account_id == account]
    return ok(found)


def create_list(ctx: Ctx) -> Reply:
    body = ctx.json_object()
    name, kind = body.get("name"), body.get("kind")
    description = body.get("description", "")
    # Lowercase only: the docs and the rules language require it; the spec pattern would allow
    # uppercase (§3 conflict). Error codes of this endpoint are UNVERIFIED.
    if not isinstance(name, str) or not LIST_NAME.fullmatch(name):
        raise validation(
            "List name must only contain lowercase letters, numbers and underscores "
            "(at most 50 characters)",
            pointer="/name",
        )
    if kind not in KINDS:
        raise validation(f"kind must be one of {', '.join(KINDS)}", pointer="/kind")
    if not isinstance(description, str) or len(description) > 500:
        raise validation("description must be a string of at most 500 characters")
    account = ctx.account_id
    plan = ctx.state.account_plan(account)
    if kind in ("hostname", "asn") and plan != "enterprise":
        raise validation(f"{kind} lists require an Enterprise plan", pointer="/kind")
    mine = [x for x in ctx.state.lists.values() if x.account_id == account]
    if any(x.name == name for x in mine):
        raise ApiError(400, 10027, "A list with this name already exists")  # UNVERIFIED
    if len(mine) >= LIST_COUNT[plan]:
        raise ApiError(400, 10026, "The maximum number of lists has been reached")  # UNVERIFIED
    lst = IpList(ctx.state.ids.new(), name, kind, description, account, ctx.stamp, ctx.stamp)
    ctx.state.lists[lst.id] = lst
    return ok(list_json(ctx, lst))


def get_list(ctx: Ctx) -> Reply:
    return ok(list_json(ctx, ctx.ip_list()))


def update_list(ctx: Ctx) -> Reply:
    lst = ctx.ip_list()
    body = ctx.json_object()
    if set(body) - {"description"}:
        raise validation("only the description of a list can be changed")
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > 500:
        raise validation("description must be a string of at most 500 characters")
    lst.description = description
    lst.modified_on = ctx.stamp
    return ok(list_json(ctx, lst))


def delete_list(ctx: Ctx) -> Reply:
    lst = ctx.ip_list()
    if referencing_rules(ctx.state, lst.account_id, lst.name):
        # Refused while any rule references it (§3); code and status UNVERIFIED.
        raise ApiError(400, 10025, "list is referenced by one or more rules and cannot be deleted")
    del ctx.state.lists[lst.id]
    return ok({"id": lst.id})


def _display(ctx: Ctx, net: IPNetwork) -> str:
    return item_display(net, cidr_singles=ctx.options.cidr_singles)


def _cursor(direction: str, key: tuple[int, int, int]) -> str:
    raw = f"{direction}:{key[0]}:{key[1]}:{key[2]}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _uncursor(cursor: str) -> tuple[str, tuple[int, int, int]]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        direction, version, address, prefix = raw.split(":")
        return direction, (int(version), int(address), int(prefix))
    except ValueError:
        raise validation("invalid cursor") from None


def get_items(ctx: Ctx) -> Reply:
    """Cursor pages, ascending; ``search`` is a prefix match on the item's ``ip`` text."""
    lst = ctx.ip_list()
    try:
        per_page = int(ctx.q("per_page") or ctx.options.items_per_page)
    except ValueError:
        raise validation("per_page must be an integer") from None
    if not 1 <= per_page <= 500:
        raise validation("per_page must be between 1 and 500")
    items = lst.sorted_items()
    search = (ctx.q("search") or "").lower()  # IPv6 is stored lowercased (§3)
    if search:
        items = [i for i in items if _display(ctx, i.network).startswith(search)]
    cursor = ctx.q("cursor")
    if cursor:
        direction, key = _uncursor(cursor)
        if direction == "a":
            items = [i for i in items if sort_key(i.network) > key]
            page, more_before = items[:per_page], True
            more_after = len(items) > per_page
        else:
            items = [i for i in items if sort_key(i.network) < key]
            page, more_after = items[-per_page:], True
            more_before = len(items) > per_page
    else:
        page, more_before, more_after = items[:per_page], False, len(items) > per_page
    cursors: dict[str, str] = {}
    if page and more_before:
        cursors["before"] = _cursor("b", sort_key(page[0].network))
    if page and more_after:  # left out on the last page (§1)
        cursors["after"] = _cursor("a", sort_key(page[-1].network))
    result = [i.to_json(_display(ctx, i.network)) for i in page]
    return ok(result, result_info={"cursors": cursors})


def get_item(ctx: Ctx) -> Reply:
    lst = ctx.ip_list()
    for item in lst.items.values():
        if item.id == ctx.params["item_id"]:
            return ok(item.to_json(_display(ctx, item.network)))
    raise ApiError(404, 10001, "list item not found")  # code UNVERIFIED


def _parse_items(ctx: Ctx, lst: IpList) -> list[tuple[IPNetwork, str]]:
    body = ctx.json()
    if not isinstance(body, list):
        raise validation("the request body must be a JSON array of list items")
    kinds = {k for item in body if isinstance(item, dict) for k in ITEM_KEYS if k in item}
    if len(kinds) > 1:
        raise ApiError(400, 10056, "The operation contains different types of list items")
    parsed: list[tuple[IPNetwork, str]] = []
    seen: set[IPNetwork] = set()
    for position, item in enumerate(body):
        if not isinstance(item, dict) or not kinds:
            raise validation(f"list item at position {position} must be an object with an ip")
        if lst.kind != "ip" or "ip" not in item:
            raise ApiError(400, 10058, "List items incompatible with list type")
        net = list_item_network(item["ip"], position, legacy_v6=ctx.options.legacy_v6_items)
        comment = item.get("comment", "")
        if not isinstance(comment, str) or len(comment) > 500:
            raise validation(f"comment at position {position} must be at most 500 characters")
        if net in seen:
            raise ApiError(400, 10028, "The add list items operation contains duplicate items")
        seen.add(net)
        parsed.append((net, comment))
    return parsed


def _start(ctx: Ctx, lst: IpList, items: dict[IPNetwork, ListItem]) -> Reply:
    if ctx.state.pending_operation(lst.account_id) is not None:
        # 429 per the 2025-10 docs (§3); code and message UNVERIFIED.
        raise ApiError(
            429, 10062, "There is already a pending bulk operation for this account; retry later"
        )
    op = BulkOperation(ctx.state.ids.new(), lst.account_id, lst.id, items, ctx.now)
    ctx.state.operations[op.id] = op
    return ok({"operation_id": op.id}, status=ctx.options.write_status)


def _merged(
    ctx: Ctx, base: dict[IPNetwork, ListItem], new: list[tuple[IPNetwork, str]]
) -> dict[IPNetwork, ListItem]:
    items = dict(base)
    for net, comment in new:
        old = items.get(net)
        if old is not None:  # upsert: same id, comment replaced
            items[net] = ListItem(old.id, net, comment, old.created_on, ctx.stamp)
        else:
            items[net] = ListItem(ctx.state.ids.new(), net, comment, ctx.stamp, ctx.stamp)
    return items


def add_items(ctx: Ctx) -> Reply:
    lst = ctx.ip_list()
    parsed = _parse_items(ctx, lst)
    return _start(ctx, lst, _merged(ctx, lst.items, parsed))


def replace_items(ctx: Ctx) -> Reply:
    lst = ctx.ip_list()
    parsed = _parse_items(ctx, lst)
    return _start(ctx, lst, _merged(ctx, {}, parsed))


def delete_items(ctx: Ctx) -> Reply:
    """Body ``{"items": [{"id": ...}]}``; ids not in the list are ignored (UNVERIFIED)."""
    lst = ctx.ip_list()
    body = ctx.json()
    entries = body.get("items") if isinstance(body, dict) else None
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("id"), str) for e in entries
    ):
        raise validation('the request body must be {"items": [{"id": "<item id>"}, ...]}')
    doomed = {e["id"] for e in entries}
    items = {net: i for net, i in lst.items.items() if i.id not in doomed}
    return _start(ctx, lst, items)


def get_op(ctx: Ctx) -> Reply:
    op = ctx.state.operations.get(ctx.params["operation_id"])
    if op is None or op.account_id != ctx.account_id:
        raise ApiError(404, 10001, "bulk operation not found")  # code UNVERIFIED
    if op.status in ("pending", "running"):
        op.polls += 1
        if op.polls > ctx.options.bulk_polls:
            complete(ctx.state, ctx.options, op, ctx.now)
        else:
            first_of_several = op.polls == 1 and ctx.options.bulk_polls > 1
            op.status = "pending" if first_of_several else "running"
    return ok(op.to_json())


def complete(state: State, options: Options, op: BulkOperation, now: float) -> None:
    """Land (or fail) an operation. Quota is checked across the account's lists."""
    lst = state.lists.get(op.list_id)
    op.completed = rfc3339(now)
    if lst is None:
        op.status, op.error = "failed", "the list no longer exists"
        return
    if options.fail_operations > 0:
        options.fail_operations -= 1
        op.status, op.error = "failed", options.fail_error
        return
    others = sum(
        len(x.items) for x in state.lists.values() if x.account_id == op.account_id and x is not lst
    )
    if others + len(op.items) > LIST_ITEMS[state.account_plan(op.account_id)]:
        op.status, op.error = "failed", FULL_ERROR
        return
    lst.items = op.items
    lst.modified_on = op.completed
    op.status = "completed"


def complete_due(state: State, options: Options, now: float) -> None:
    """Complete operations whose ``bulk_seconds`` have passed on the emulator clock."""
    if options.bulk_seconds is None:
        return
    for op in state.operations.values():
        if op.status in ("pending", "running") and now - op.created_at >= options.bulk_seconds:
            complete(state, options, op, now)
