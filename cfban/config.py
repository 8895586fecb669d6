"""Configuration: a TOML file plus environment variables, validated once, then frozen.

Budget and delivery settings (``[cloudflare] budget_share``, ``list_writes_per_window``,
``on_full``, and the ``[notify]`` webhook) are explained in ``docs/cloudflare-budget.md``.

Where the file is: ``--config PATH``, else ``$CFBAN_CONFIG``, else ``/etc/cfban/cfban.toml``.
A missing default file is not an error: cfban then runs on its embedded defaults, which is a
dry run (no token, so no Cloudflare call is made). Relative paths in the file (``state_dir``,
``api_token_file``, ``logpath``, ``[origin] output``) are relative to the file. Environment
variables win over it:

==========================  ====================================
``CLOUDFLARE_API_TOKEN``    ``[cloudflare] api_token``
``CFBAN_API_TOKEN_FILE``    ``[cloudflare] api_token_file``
``CFBAN_API_URL``           ``[cloudflare] api_url``
``CFBAN_ACCOUNT_ID``        ``[cloudflare] account_id``
``CFBAN_ZONE_ID``           ``[cloudflare] zone_id``
``CFBAN_BACKEND``           ``[cloudflare] backend``
``CFBAN_STATE_DIR``         ``state_dir``
``CFBAN_ALLOW_TEST_NETS``   ``[realip] allow_test_nets`` (``1``)
==========================  ====================================
"""

from __future__ import annotations

import ipaddress
import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from cfban.durations import DEFAULT_BANTIME, parse_duration
from cfban.errors import ConfigError
from cfban.paths import DEFAULT_CONFIG_PATH, default_state_dir
from cfban.rules import DEFAULT_MAX_QUEUE_AGE, JailRules, Recidive, Rules

Action = Literal["block", "challenge", "js_challenge", "managed_challenge"]

DEFAULT_API_URL = "https://api.cloudflare.com/client/v4"

Duration = Annotated[int, BeforeValidator(parse_duration)]


def _check_networks(values: list[str]) -> list[str]:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or CIDR network") from None
    return values


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CloudflareSettings(_Model):
    """The ``[cloudflare]`` table."""

    api_url: str = DEFAULT_API_URL
    api_token: SecretStr | None = None
    api_token_file: Path | None = None
    backend: Literal["access-rules", "list"] = "access-rules"
    zone_id: str | None = None
    zone_ids: list[str] = Field(default_factory=list)
    account_id: str | None = None
    list_name: str = "cfban"
    mode: Action = "block"
    #: Custom lists the account's plan allows (Free: 1). With one list, the list backend
    #: keeps blocks in it and puts challenges into IP Access Rules.
    max_lists: int = Field(default=1, ge=1)
    #: How long a manual ``cfban unban`` keeps the address on the shared allowlist, so that
    #: no host sharing the account bans it again meanwhile; 0 turns that off.
    unban_allow: Duration = Field(default=3600, ge=0)
    #: How old the local copy of the shared allowlist may get before it is read again.
    allowlist_refresh: Duration = Field(default=300, ge=1)
    ipv6_prefix: int = Field(default=64, ge=32, le=128)
    # Cloudflare's account-wide budget; cfban keeps to ``budget_share`` of it so the
    # dashboard and the user's other tools are never locked out by cfban.
    requests_per_window: int = Field(default=1200, ge=1)
    window_seconds: Duration = 300
    budget_share: float = Field(default=0.5, gt=0, le=1)
    # The Lists API's own budget of item-modifying requests (30,000 per 12 h).
    list_writes_per_window: int = Field(default=30_000, ge=1)
    list_writes_window: Duration = 43_200
    on_full: Literal["evict", "spill", "hold"] = "evict"
    timeout: float = Field(default=10.0, gt=0)
    deliver_deadline: float = Field(default=3.0, ge=0)
    #: ``cfban health`` fails when a queued operation has waited longer than this.
    max_queue_age: Duration = Field(default=int(DEFAULT_MAX_QUEUE_AGE), ge=1)

    @property
    def zones(self) -> list[str]:
        """Every configured zone id, ``zone_id`` first."""
        zones = [self.zone_id] if self.zone_id else []
        return zones + [z for z in self.zone_ids if z not in zones]


class NotifySettings(_Model):
    """The ``[notify]`` table: one JSON POST when delivery stalls, when the list passes
    90 % and when either recovers."""

    webhook_url: str | None = None
    timeout: float = Field(default=5.0, gt=0)
    attempts: int = Field(default=5, ge=1, le=20)

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http:// or https:// URL")
        return value


class RealIpSettings(_Model):
    """The ``[realip]`` table: whom to believe about the client address."""

    header: str = "CF-Connecting-IP"
    trusted_proxies: Annotated[list[str], BeforeValidator(_check_networks)] = Field(
        default_factory=list
    )
    use_x_forwarded_for: bool = False
    # Documentation (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32, 3fff::/20)
    # and benchmarking (198.18.0.0/15) addresses are refused as ban targets unless this is
    # on: for tests and demos only, never needed on a real site.
    allow_test_nets: bool = False


class JailSettings(_Model):
    """One ``[jails.NAME]`` table."""

    enabled: bool = True
    filter: str
    logpath: list[str] = Field(default_factory=list)
    maxretry: int = Field(default=5, ge=1)
    findtime: Duration = 600
    bantime: Duration = DEFAULT_BANTIME
    ignoreip: Annotated[list[str], BeforeValidator(_check_networks)] = Field(default_factory=list)
    bantime_factor: float = Field(default=1.0, ge=1.0)
    bantime_maxtime: Duration | None = None
    #: What the jail's bans do; None: ``[cloudflare] mode``.
    action: Action | None = None
    #: A target with this many earlier bans (any jail) is blocked, whatever ``action``; 0: off.
    escalate_after: int = Field(default=0, ge=0)

    @field_validator("logpath", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class OriginSettings(_Model):
    """The ``[origin]`` table: the host firewall lock of ``cfban origin`` (see that module)."""

    firewall: Literal["nftables", "firewalld", "urltable"] = "nftables"
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        default_factory=lambda: [80, 443], min_length=1
    )
    allow: Annotated[list[str], BeforeValidator(_check_networks)] = Field(default_factory=list)
    max_range_age: Duration = 30 * 86400
    output: Path | None = None
    check: bool = True


class RecidiveSettings(_Model):
    """The ``[recidive]`` table: an address banned ``bans`` times (any jail) within
    ``findtime`` gets ``bantime`` instead. ``bans = 0`` (the default) turns it off."""

    bans: int = Field(default=0, ge=0)
    findtime: Duration = Field(default=86400, ge=1)
    bantime: Duration = 604800

    @field_validator("bans")
    @classmethod
    def _at_least_two(cls, value: int) -> int:
        if value == 1:
            raise ValueError("must be 0 (off) or at least 2")
        return value


class Settings(_Model):
    """The whole configuration."""

    state_dir: Path | None = None
    ignoreip: Annotated[list[str], BeforeValidator(_check_networks)] = Field(default_factory=list)
    log_format: Literal["text", "json"] = "text"
    cloudflare: CloudflareSettings = Field(default_factory=CloudflareSettings)
    realip: RealIpSettings = Field(default_factory=RealIpSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    jails: dict[str, JailSettings] = Field(default_factory=dict)
    origin: OriginSettings = Field(default_factory=OriginSettings)
    recidive: RecidiveSettings = Field(default_factory=RecidiveSettings)
    source: str = "embedded defaults"

    def rules(self) -> Rules:
        """What committing a ban needs from this configuration (see :mod:`cfban.intake`).

        Raises:
            ConfigError: the token file cannot be read.
        """
        recidive = self.recidive
        return Rules(
            state_dir=self.resolved_state_dir,
            ipv6_prefix=self.cloudflare.ipv6_prefix,
            ignoreip=tuple(self.ignoreip),
            allow_test_nets=self.realip.allow_test_nets,
            dry_run=self.dry_run,
            jails={
                name: JailRules(
                    bantime=jail.bantime,
                    bantime_factor=jail.bantime_factor,
                    bantime_maxtime=jail.bantime_maxtime,
                    ignoreip=tuple(jail.ignoreip),
                    action=jail.action or self.cloudflare.mode,
                    escalate_after=jail.escalate_after,
                )
                for name, jail in self.jails.items()
            },
            recidive=(
                Recidive(recidive.bans, recidive.findtime, recidive.bantime)
                if recidive.bans
                else None
            ),
            max_queue_age=float(self.cloudflare.max_queue_age),
            default_action=self.cloudflare.mode,
            backend=self.cloudflare.backend,
            allowlist_refresh=float(self.cloudflare.allowlist_refresh),
            max_lists=self.cloudflare.max_lists,
        )

    def actions_in_use(self) -> tuple[str, ...]:
        """Every action a ban may carry under this configuration, mildest first."""
        from cfban.rules import ACTIONS

        used = {self.cloudflare.mode}
        for jail in self.jails.values():
            used.add(jail.action or self.cloudflare.mode)
            if jail.escalate_after:
                used.add("block")
        return tuple(a for a in ACTIONS if a in used)

    @property
    def dry_run(self) -> bool:
        """True when no API token is configured: Cloudflare calls are printed, not made."""
        return self.token() is None

    def token(self) -> SecretStr | None:
        """The API token, from the setting or the token file.

        Raises:
            ConfigError: the token file cannot be read or is empty.
        """
        cf = self.cloudflare
        if cf.api_token is not None and cf.api_token.get_secret_value().strip():
            return SecretStr(cf.api_token.get_secret_value().strip())
        if cf.api_token_file is None:
            return None
        try:
            text = cf.api_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read api_token_file {cf.api_token_file}: {exc.strerror}",
                hint="check the path and that cfban may read it",
            ) from None
        if not text:
            raise ConfigError(f"api_token_file {cf.api_token_file} is empty")
        return SecretStr(text)

    def token_file_warning(self) -> str | None:
        """A warning when the token file can be read by other local users."""
        path = self.cloudflare.api_token_file
        if path is None:
            return None
        try:
            mode = path.stat().st_mode
        except OSError:
            return None
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            return f"{path} is readable by other users; run: chmod 600 {path}"
        return None

    @property
    def resolved_state_dir(self) -> Path:
        """Where the state database lives."""
        return self.state_dir if self.state_dir is not None else default_state_dir()


_ENV_CLOUDFLARE = {
    "CLOUDFLARE_API_TOKEN": "api_token",
    "CFBAN_API_TOKEN_FILE": "api_token_file",
    "CFBAN_API_URL": "api_url",
    "CFBAN_ACCOUNT_ID": "account_id",
    "CFBAN_ZONE_ID": "zone_id",
    "CFBAN_BACKEND": "backend",
}


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    data = dict(raw)
    overrides = {key: env[var] for var, key in _ENV_CLOUDFLARE.items() if env.get(var)}
    if overrides:
        data["cloudflare"] = _merged(data.get("cloudflare"), overrides)
    if env.get("CFBAN_STATE_DIR"):
        data["state_dir"] = env["CFBAN_STATE_DIR"]
    if env.get("CFBAN_ALLOW_TEST_NETS"):
        allow = {"allow_test_nets": env["CFBAN_ALLOW_TEST_NETS"]}
        data["realip"] = _merged(data.get("realip"), allow)
    return data


def _merged(table: Any, overrides: dict[str, str]) -> Any:
    """``table`` with ``overrides``; a value that is not a table is left for validation to
    reject."""
    if table is None:
        return dict(overrides)
    return {**table, **overrides} if isinstance(table, dict) else table


def _describe(error: ValidationError, source: str) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown setting (check its spelling and its [table])"
        problems.append(f"{where}: {message}")
    return f"invalid configuration in {source}: " + "; ".join(problems)


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the configuration (see the module docstring for where from).

    Raises:
        ConfigError: the file cannot be read, is not TOML, or has invalid settings.
    """
    env = os.environ if env is None else env
    explicit = path is not None or bool(env.get("CFBAN_CONFIG"))
    if path is None:
        path = Path(env["CFBAN_CONFIG"]) if env.get("CFBAN_CONFIG") else DEFAULT_CONFIG_PATH
    raw: dict[str, Any] = {}
    source = "embedded defaults"
    if path.exists() or explicit:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"configuration file {path} does not exist",
                hint="pass --config PATH or set CFBAN_CONFIG to an existing file",
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"configuration file {path} is not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
        source = str(path)
    if source != "embedded defaults":
        raw = _relative_to(raw, path.parent)
    data = _apply_env(raw, env)
    data["source"] = source
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def _relative_to(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Paths written in the file (state_dir, api_token_file, logpath) are relative to it."""

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).is_absolute():
            return str(base.resolve() / value)
        return value

    data = dict(raw)
    if "state_dir" in data:
        data["state_dir"] = fix(data["state_dir"])
    origin = data.get("origin")
    if isinstance(origin, dict) and "output" in origin:
        data["origin"] = dict(origin, output=fix(origin["output"]))
    cloudflare = data.get("cloudflare")
    if isinstance(cloudflare, dict) and "api_token_file" in cloudflare:
        data["cloudflare"] = dict(cloudflare, api_token_file=fix(cloudflare["api_token_file"]))
    jails = data.get("jails")
    if isinstance(jails, dict):
        fixed: dict[str, Any] = {}
        for name, jail in jails.items():
            if isinstance(jail, dict) and "logpath" in jail:
                paths = jail["logpath"]
                paths = [fix(p) for p in paths] if isinstance(paths, list) else fix(paths)
                jail = dict(jail, logpath=paths)
            fixed[name] = jail
        data["jails"] = fixed
    return data
