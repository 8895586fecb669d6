"""The Cloudflare objects cfban reads, as tolerant pydantic models (unknown keys ignored)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cfban.errors import TransportError


class _Api(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AccessRuleConfiguration(_Api):
    target: str
    value: str


class AccessRuleScope(_Api):
    id: str | None = None
    type: str | None = None


class AccessRule(_Api):
    id: str
    mode: str
    configuration: AccessRuleConfiguration
    notes: str | None = None
    scope: AccessRuleScope | None = None

    def belongs_to(self, scope_id: str) -> bool:
        """False for a rule a zone listing shows but another scope (the account) owns."""
        return self.scope is None or self.scope.id is None or self.scope.id == scope_id


class IpList(_Api):
    id: str
    name: str
    kind: str
    num_items: int = 0
    description: str | None = None
    modified_on: str | None = None


class ListItem(_Api):
    id: str
    ip: str | None = None
    comment: str | None = None


class BulkOperation(_Api):
    id: str = ""
    status: str
    error: str | None = None
    completed: str | None = None


class RulesetRule(_Api):
    id: str = ""
    action: str = ""
    expression: str = ""
    description: str | None = None
    enabled: bool = True
    ref: str | None = None


class Ruleset(_Api):
    id: str
    phase: str | None = None
    version: str | None = None
    rules: list[RulesetRule] = Field(default_factory=list)


class TokenStatus(_Api):
    id: str
    status: str


_M = TypeVar("_M", bound=_Api)


def parse(model: type[_M], data: Any, what: str) -> _M:
    """``data`` as ``model``.

    Raises:
        TransportError: the answer does not have the shape Cloudflare documents.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise TransportError(
            f"unexpected answer from Cloudflare for {what}: "
            f"{exc.error_count()} field(s) do not match ({exc.errors()[0]['loc']})"
        ) from None


def parse_all(model: type[_M], items: Any, what: str) -> list[_M]:
    """Every element of ``items`` as ``model`` (see :func:`parse`)."""
    if not isinstance(items, list):
        raise TransportError(f"unexpected answer from Cloudflare for {what}: not a list")
    return [parse(model, item, what) for item in items]
