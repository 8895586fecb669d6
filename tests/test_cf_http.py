"""The raw request layer: envelope checks, error mapping, retries, Retry-After, paging."""

from __future__ import annotations

import email.utils
import random
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr
from pytest_httpx import HTTPXMock

from cfban.clock import FakeClock
from cfban.cloudflare import CloudflareHttp, NotFoundError
from cfban.errors import AuthError, CloudflareError, RateLimitedError, TransportError

API = "https://api.example.test/client/v4"
TOKEN = "cfut_SECRET-TOKEN-0123456789abcdef0123456789"
ZONE = "0123456789abcdef0123456789abcdef"


class CountingBudget:
    def __init__(self) -> None:
        self.taken = 0

    def acquire(self) -> float:
        self.taken += 1
        return 0.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def http(clock: FakeClock) -> Iterator[CloudflareHttp]:
    client = CloudflareHttp(
        api_url=API, token=SecretStr(TOKEN), clock=clock, rng=random.Random(7), timeout=2.0
    )
    yield client
    client.close()


def ok(result: object, **info: object) -> dict[str, object]:
    body: dict[str, object] = {"success": True, "errors": [], "messages": [], "result": result}
    if info:
        body["result_info"] = info
    return body


def fail(code: int, message: str) -> dict[str, object]:
    return {
        "success": False,
        "errors": [{"code": code, "message": message}],
        "messages": [],
        "result": None,
    }


def assert_no_token(exc: BaseException) -> None:
    assert TOKEN not in str(exc)
    assert TOKEN not in repr(exc)
    assert "SECRET" not in str(exc.args)


def test_success_returns_result_and_sends_bearer(
    http: CloudflareHttp, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=f"{API}/user/tokens/verify", json=ok({"id": "x"}))
    envelope = http.request("GET", "/user/tokens/verify")
    assert envelope.result == {"id": "x"}
    request = httpx_mock.get_requests()[0]
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["User-Agent"].startswith("cfban/")
    assert TOKEN not in repr(http)


def test_request_counts_against_the_budget(clock: FakeClock, httpx_mock: HTTPXMock) -> None:
    budget = CountingBudget()
    httpx_mock.add_response(status_code=502, json=fail(1, "bad gateway"))
    httpx_mock.add_response(json=ok([]))
    with CloudflareHttp(api_url=API, token=SecretStr(TOKEN), clock=clock, budget=budget) as http:
        http.request("GET", "/x")
    assert budget.taken == 2  # every attempt, retries included


def test_invalid_token_is_auth_error_with_hint(http: CloudflareHttp, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=401, json=fail(1000, "Invalid API Token"))
    with pytest.raises(AuthError) as info:
        http.request("GET", "/user/tokens/verify")
    assert "CLOUDFLARE_API_TOKEN" in str(info.value)
    assert info.value.code == 1000 and info.value.status == 401
    assert_no_token(info.value)
    assert len(httpx_mock.get_requests()) == 1  # not retried


def test_invalid_token_with_200_and_success_false(
    http: CloudflareHttp, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(status_code=200, json=fail(1000, "Invalid API Token"))
    with pytest.raises(AuthError, match="CLOUDFLARE_API_TOKEN"):
        http.request("GET", "/user/tokens/verify")


def test_malformed_header_error_chain(http: CloudflareHttp, httpx_mock: HTTPXMock) -> None:
    body = fail(6003, "Invalid request headers")
    body["errors"][0]["error_chain"] = [  # type: ignore[index]
        {"code": 6111, "message": "Invalid format for Authorization header"}
    ]
    httpx_mock.add_response(status_code=400, json=body)
    with pytest.raises(AuthError) as info:
        http.request("GET", "/user/tokens/verify")
    assert "6111" in str(info.value) and "Invalid format" in str(info.value)


def test_missing_permission_names_it(http: CloudflareHttp, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=403, json=fail(10000, "Authentication error"))
    with pytest.raises(AuthError) as info:
        http.request(
            "POST",
            f"/zones/{ZONE}/firewall/access_rules/rules",
            json_body={},
            permission="Zone > Firewall Services > Edit",
        )
    text = str(info.value)
    assert "Zone > Firewall Services > Edit" in text
    assert "CLOUDFLARE_API_TOKEN" not in text  # the token is fine, its permissions are not
    assert info.value.status == 403
    assert_no_token(info.value)


def test_404_on_zone_hints_at_zone_id(http: CloudflareHttp, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=404, json=fail(7003, "Could not route"))
    with pytest.raises(NotFoundError) as info:
        http.request("GET", f"/zones/{ZONE}/firewall/access_rules/rules")
    assert f"check zone_id '{ZONE}'" in str(info.value)
    assert info.value.code == 7003


def test_404_on_account_hints_at_account_id(http: CloudflareHttp, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=404, text="<html>not found</html>")
    with pytest.raises(NotFoundError, match="check account_id 'acc1'"):
        http.request("GET", "/accounts/acc1/rules/lists")


def test_400_with_codes_is_cloudflare_error(http: CloudflareHttp, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        status_code=400, json=fail(10009, "firewallaccessrules.api.duplicate_of_existing")
    )
    with pytest.raises(CloudflareError) as info:
        http.request("POST", "/zones/z/firewall/access_rules/rules", json_body={})
    assert type(info.value) is CloudflareError
    assert info.value.code == 10009 and info.value.status == 400
    assert "duplicate_of_existing" in str(info.value)
    assert len(httpx_mock.get_requests()) == 1


def test_429_waits_retry_after_seconds(
    http: CloudflareHttp, clock: FakeClock, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(
        status_code=429, headers={"Retry-After": "7"}, json=fail(971, "Please wait")
    )
    httpx_mock.add_response(json=ok("done"))
    assert http.request("GET", "/x").result == "done"
    assert clock.monotonic() == 7.0


def test_429_waits_retry_after_http_date(
    http: CloudflareHttp, clock: FakeClock, httpx_mock: HTTPXMock
) -> None:
    when = email.utils.formatdate(clock.now() + 12, usegmt=True)
    httpx_mock.add_response(status_code=429, headers={"Retry-After": when}, text="<html>")
    httpx_mock.add_response(json=ok("done"))
    assert http.request("GET", "/x").result == "done"
    assert 11.0 <= clock.monotonic() <= 12.0


def test_429_without_retry_after_backs_off(
    http: CloudflareHttp, clock: FakeClock, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(status_code=429, json=fail(971, "Please wait"))
    httpx_mock.add_response(status_code=429, json=fail(971, "Please wait"))
    httpx_mock.add_response(json=ok("done"))
    assert http.request("GET", "/x").result == "done"
    assert 0.25 <= clock.monotonic() <= 1.5  # 0.5 s, then 1 s, each with jitter in [0.5, 1]


def test_429_with_a_wait_longer_than_allowed_fails_at_once(
    http: CloudflareHttp, clock: FakeClock, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(
        status_code=429, headers={"Retry-After": "300"}, json=fail(971, "Please wait")
    )
    with pytest.raises(RateLimitedError) as info:
        http.request("GET", "/x")
    assert info.value.status == 429 and info.value.code == 971
    assert getattr(info.value, "retry_after", None) == 300.0  # for the outbox's backoff
    assert clock.monotonic() == 0.0
    assert_no_token(info.value)


def test_429_forever_gives_rate_limited_error(
    http: CloudflareHttp, clock: FakeClock, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(
        status_code=429, headers={"Retry-After": "1"}, json=fail(971, "wait"), is_reusable=True
    )
    with pytest.raises(RateLimitedError, match="rate-limited"):
        http.request("GET", "/x")
    assert len(httpx_mock.get_requests()) == 5  # bounded attempts


def test_5xx_then_success(http: CloudflareHttp, clock: FakeClock, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=500, json=fail(10001, "internal"))
    httpx_mock.add_response(status_code=503, text="<!DOCTYPE html><html>down</html>")
    httpx_mock.add_response(json=ok({"id": "r1"}))
    assert http.request("GET", "/x").result == {"id": "r1"}
    assert len(httpx_mock.get_requests()) == 3
    assert clock.monotonic() > 0


def test_html_body_is_transport_error_after_retries(
    http: CloudflareHttp, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(
        status_code=200,
        text="<!DOCTYPE html><title>Just a moment...</title>",
        headers={"content-type": "text/html"},
        is_reusable=True,
    )
    with pytest.raises(TransportError) as info:
        http.request("GET", "/x")
    assert "text/html" in str(info.value) and "JSON envelope" in str(info.value)
    assert len(httpx_mock.get_requests()) == 5


def test_json_without_envelope_is_transport_error(
    http: CloudflareHttp, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(json=["not", "an", "envelope"], is_reusable=True)
    with pytest.raises(TransportError):
        http.request("GET", "/x")


def test_connection_errors_retried_then_succeed(
    http: CloudflareHttp, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_exception(httpx.ConnectError("connection refused"))
    httpx_mock.add_exception(httpx.ReadTimeout("timed out"))
    httpx_mock.add_response(json=ok(1))
    assert http.request("GET", "/x").result == 1


def test_connection_error_forever(http: CloudflareHttp, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectError("connection refused"), is_reusable=True)
    with pytest.raises(TransportError) as info:
        http.request("GET", "/x")
    assert "cannot connect" in str(info.value) and "api_url" in str(info.value)
    assert_no_token(info.value)


def test_timeout_is_transport_error(http: CloudflareHttp, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ReadTimeout("timed out"), is_reusable=True)
    with pytest.raises(TransportError, match="in time"):
        http.request("GET", "/x")
    assert len(httpx_mock.get_requests()) == 5


def test_read_timeout_not_retried_when_not_idempotent(
    http: CloudflareHttp, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_exception(httpx.ReadTimeout("timed out"))
    with pytest.raises(TransportError):
        http.request("POST", "/zones/z/rulesets", json_body={}, idempotent=False)
    assert len(httpx_mock.get_requests()) == 1


def test_timeout_setting_reaches_httpx(http: CloudflareHttp, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(json=ok(1))
    http.request("GET", "/x")
    timeout = httpx_mock.get_requests()[0].extensions["timeout"]
    assert timeout["read"] == 2.0 and timeout["connect"] == 2.0


def test_total_retry_time_is_bounded(clock: FakeClock, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=502, json=fail(1, "bad gateway"), is_reusable=True)
    http = CloudflareHttp(
        api_url=API, token=SecretStr(TOKEN), clock=clock, max_attempts=100, max_retry_seconds=20
    )
    with http, pytest.raises(CloudflareError, match="bad gateway"):
        http.request("GET", "/x")
    assert clock.monotonic() <= 20.0
    assert 3 <= len(httpx_mock.get_requests()) < 100


def test_token_never_logged(
    http: CloudflareHttp, httpx_mock: HTTPXMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    httpx_mock.add_response(status_code=500, json=fail(1, "x"))
    httpx_mock.add_response(json=ok(1))
    http.request("GET", "/x")
    assert caplog.records
    assert TOKEN not in caplog.text


def test_page_pagination(http: CloudflareHttp, httpx_mock: HTTPXMock) -> None:
    for page, items in ((1, [1, 2]), (2, [3, 4]), (3, [5])):
        httpx_mock.add_response(
            url=httpx.URL(f"{API}/items", params={"mode": "block", "page": page, "per_page": 2}),
            json=ok(items, page=page, per_page=2, count=len(items), total_count=5),
        )
    assert list(http.iter_pages("/items", params={"mode": "block"}, per_page=2)) == [1, 2, 3, 4, 5]


def test_page_pagination_survives_a_capped_page_size(
    http: CloudflareHttp, httpx_mock: HTTPXMock
) -> None:
    # The server says it uses 2 per page although 5 were asked for: keep going.
    httpx_mock.add_response(url=f"{API}/items?page=1&per_page=5", json=ok([1, 2], per_page=2))
    httpx_mock.add_response(url=f"{API}/items?page=2&per_page=5", json=ok([3], per_page=2))
    httpx_mock.add_response(url=f"{API}/items?page=3&per_page=5", json=ok([], per_page=2))
    assert list(http.iter_pages("/items", per_page=5)) == [1, 2, 3]


def test_5xx_retry_after_is_honoured(
    http: CloudflareHttp, clock: FakeClock, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(status_code=503, headers={"Retry-After": "4"}, text="<html>")
    httpx_mock.add_response(json=ok(1))
    assert http.request("GET", "/x").result == 1
    assert clock.monotonic() == 4.0


def test_public_names() -> None:
    import cfban.cloudflare

    assert sorted(cfban.cloudflare.__all__) == [
        "AccessRulesBackend", "AllowRules", "Backend", "BanEntry", "CloudflareHttp",
        "DryRunBackend", "Envelope", "HostRateLimiter", "KINDS", "ListBackend", "ListFullError",
        "Marker", "NotFoundError", "PERSISTENT", "Problem", "RemoteEntry", "RetryLaterError",
        "StallRecord", "classify", "clear_problem", "cloudflare_checks", "cloudflare_lines",
        "cloudflare_status", "format_marker", "make_allow_rules", "make_backend", "parse_marker",
        "read_problem", "record_problem", "request_counts",
    ]  # fmt: skip
    assert all(hasattr(cfban.cloudflare, name) for name in cfban.cloudflare.__all__)


def test_page_pagination_stops_on_empty_page(http: CloudflareHttp, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{API}/items?page=1&per_page=2", json=ok([1, 2]))
    httpx_mock.add_response(url=f"{API}/items?page=2&per_page=2", json=ok([]))
    assert list(http.iter_pages("/items", per_page=2)) == [1, 2]


def test_cursor_pagination(http: CloudflareHttp, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{API}/items?per_page=2", json=ok([1, 2], cursors={"after": "c2"}))
    httpx_mock.add_response(
        url=f"{API}/items?per_page=2&cursor=c2", json=ok([3], cursors={"before": "c2"})
    )
    assert list(http.iter_cursor("/items", per_page=2)) == [1, 2, 3]
