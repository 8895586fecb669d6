"""Configuration: file, environment, validation errors, durations."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfban.config import load_settings
from cfban.durations import parse_duration
from cfban.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("600", 600), ("10m", 600), ("1h", 3600), ("1d", 86400), ("1d12h", 129600),
     ("1h 30m", 5400), ("-1", -1), ("2w", 1209600)],
)  # fmt: skip
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten", "10q", "1h-"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_embedded_defaults_are_a_dry_run(tmp_path: Path) -> None:
    settings = load_settings(None, env={"CFBAN_CONFIG": ""})
    assert settings.dry_run
    assert settings.cloudflare.api_url == "https://api.cloudflare.com/client/v4"


def test_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "cfban.toml"
    path.write_text(
        'ignoreip = ["192.0.2.0/24"]\n'
        '[cloudflare]\nbackend = "list"\naccount_id = "acc"\n'
        '[jails.probes]\nfilter = "nginx-probes"\nlogpath = "/var/log/nginx/access.log"\n'
        'bantime = "1h"\n',
        encoding="utf-8",
    )
    env = {"CLOUDFLARE_API_TOKEN": "tok-123", "CFBAN_API_URL": "http://127.0.0.1:9/client/v4"}
    settings = load_settings(path, env=env)
    assert not settings.dry_run
    assert settings.cloudflare.backend == "list"
    assert settings.cloudflare.api_url.startswith("http://127.0.0.1")
    assert settings.jails["probes"].bantime == 3600
    assert settings.jails["probes"].logpath == ["/var/log/nginx/access.log"]
    assert "tok-123" not in repr(settings)


def test_unknown_key_names_it(tmp_path: Path) -> None:
    path = tmp_path / "cfban.toml"
    path.write_text('[cloudflare]\nbakend = "list"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cloudflare\.bakend: unknown setting") as info:
        load_settings(path, env={})
    assert info.value.exit_code == 78


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "cfban.toml"
    path.write_text("[cloudflare\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path, env={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", env={})


def test_token_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("secret-value\n", encoding="utf-8")
    token.chmod(0o644)
    settings = load_settings(None, env={"CFBAN_API_TOKEN_FILE": str(token)})
    secret = settings.token()
    assert secret is not None and secret.get_secret_value() == "secret-value"
    assert settings.token_file_warning() is not None
    token.chmod(0o600)
    assert settings.token_file_warning() is None
