"""Token checks: is it valid (user-owned or account-owned), and may it write."""

from __future__ import annotations

from cfban.cloudflare._http import CloudflareHttp, NotFoundError
from cfban.cloudflare._models import TokenStatus, parse
from cfban.errors import AuthError, CloudflareError


def verify_token(http: CloudflareHttp, account_id: str | None) -> tuple[bool, str]:
    """Whether the token is valid and active, and a line saying so.

    ``/user/tokens/verify`` rejects account-owned tokens, so when an account id is configured
    the account endpoint is asked too before the token is called bad.
    """
    endpoints = [("/user/tokens/verify", "user token")]
    if account_id:
        endpoints.append((f"/accounts/{account_id}/tokens/verify", "account token"))
    failure = ""
    for path, kind in endpoints:
        try:
            envelope = http.request("GET", path)
        except AuthError as exc:
            failure = str(exc)
            continue
        except CloudflareError as exc:
            failure = str(exc)
            continue
        status = parse(TokenStatus, envelope.result, "token verification")
        if status.status != "active":
            return False, f"the {kind} is {status.status}: create a new one"
        return True, f"valid and active ({kind})"
    return False, failure or "the token could not be verified"


NO_SUCH_ID = "0" * 32


def probe_write(
    http: CloudflareHttp, method: str, path: str, body: object, permission: str
) -> tuple[bool, str]:
    """Whether the token may write, asked without changing anything.

    ``path`` names an object that does not exist (its id is 32 zeros, see :data:`NO_SUCH_ID`):
    a token with the permission gets 404, one without it 403.
    """
    try:
        http.request(method, path, json_body=body, permission=permission)
    except NotFoundError:
        return True, f"the token has {permission!r}"
    except AuthError:
        return False, f"the token lacks {permission!r}: add it under My Profile > API Tokens"
    except CloudflareError as exc:
        return True, f"{permission!r} could not be verified ({exc.message})"
    return True, f"the token has {permission!r}"
