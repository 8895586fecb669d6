"""The API v4 response envelope, API errors, and the two outcomes of a request.

Every JSON answer is ``{"success", "errors", "messages", "result"[, "result_info"]}``
(cloudflare-api.md §1). Handlers return :class:`Reply` via :func:`ok` or raise
:class:`ApiError`; a request that gets no answer at all ends in :class:`Drop`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=UTF-8"


@dataclass
class Reply:
    """An HTTP answer: status, headers and raw body."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Drop:
    """No answer: the connection is closed (``drop``) or never answered in time (``timeout``)."""

    kind: Literal["drop", "timeout"]
    delay: float = 0.0


def error_entry(code: int, message: str, **extra: Any) -> dict[str, Any]:
    """One ``errors[]`` entry; ``extra`` adds e.g. ``error_chain`` or ``source``."""
    return {"code": code, "message": message, **extra}


class ApiError(Exception):
    """A failure answer: ``success:false``, ``result:null`` and at least one error."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.errors = [error_entry(code, message, **extra)]
        self.headers = headers or {}

    def also(self, code: int, message: str) -> ApiError:
        """Append a further error entry (Cloudflare sometimes sends two)."""
        self.errors.append(error_entry(code, message))
        return self

    def reply(self) -> Reply:
        body = {"success": False, "errors": self.errors, "messages": [], "result": None}
        return json_reply(self.status, body, self.headers)


def json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    data = json.dumps(body, separators=(",", ":")).encode()
    return Reply(status, data, {"Content-Type": JSON_TYPE, **(headers or {})})


def ok(
    result: Any,
    *,
    result_info: dict[str, Any] | None = None,
    messages: list[dict[str, Any]] | None = None,
    status: int = 200,
) -> Reply:
    """A success envelope around ``result``."""
    body: dict[str, Any] = {
        "success": True,
        "errors": [],
        "messages": messages or [],
        "result": result,
    }
    if result_info is not None:
        body["result_info"] = result_info
    return json_reply(status, body)


def html_reply(status: int, title: str, headers: dict[str, str] | None = None) -> Reply:
    """An edge-style HTML page, the kind a client must survive without parsing."""
    page = (
        "<!DOCTYPE html>\n<html><head><title>"
        f"{title}</title></head><body><h1>{title}</h1>"
        "<p>cloudflare</p></body></html>\n"
    )
    return Reply(status, page.encode(), {"Content-Type": HTML_TYPE, **(headers or {})})


def no_route(path: str) -> ApiError:
    """The answer for an unknown path or an object id of the wrong shape."""
    return ApiError(
        400, 7003, f"Could not route to {path}, perhaps your object identifier is invalid?"
    ).also(7000, "No route for that URI")


def validation(message: str, code: int = 1004, *, pointer: str | None = None) -> ApiError:
    """A 400 validation failure. Cloudflare's generic validation code is UNVERIFIED; 1004
    is used where cloudflare-api.md names none."""
    if pointer is not None:
        return ApiError(400, code, message, source={"pointer": pointer})
    return ApiError(400, code, message)
