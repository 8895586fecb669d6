"""The one exception hierarchy of cfban: every class of it is defined here.

Every error a user can cause or meet derives from :class:`CfbanError` and carries a message
written for that user: what went wrong, where, and how to fix it. The CLI prints
``str(error)`` as one line and exits with ``error.exit_code``; anything else is a bug.

::

    CfbanError                      exit 1
    ├── ConfigError                 exit 78  bad configuration file or environment
    ├── FilterError                 exit 78  broken filter file (file and line) or regex
    ├── RefusedError                exit 1   an address cfban must never ban
    │   └── GuardRefusal                     refused by a never-ban rule (with its reason)
    ├── StateError                  exit 1   the SQLite state cannot be used
    ├── LogError                    exit 1   a log file cannot be read
    ├── FirewallError               exit 1   the origin's firewall lock was refused or failed
    └── CloudflareError             exit 1   the API said no, or could not be reached
        ├── AuthError                        invalid/expired token, missing permission
        ├── NotFoundError                    404: a zone, account, list or rule is gone
        ├── RateLimitedError                 429 after retries
        │   └── RetryLaterError              rate-limited, with how long to wait
        └── TransportError                   network errors, timeouts, non-JSON answers

Modules that raise a subclass may re-export it (``cfban.cloudflare``, ``cfban.realip``); the
class is this one. A delivery round records an error's class name as its *kind* and its
``hint`` as the *fix* (``cfban status`` shows both).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78


class CfbanError(Exception):
    """Root of every error cfban reports to a user."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(CfbanError):
    """The configuration file or environment is invalid."""

    exit_code = EXIT_CONFIG


class FilterError(CfbanError):
    """A filter file cannot be read or one of its regexes does not compile.

    ``path`` and ``line`` locate the problem when they are known.
    """

    exit_code = EXIT_CONFIG

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message, hint=hint)
        self.path = path
        self.line = line


class RefusedError(CfbanError):
    """cfban refuses to ban this address (Cloudflare edge, allowlisted, private, ...)."""


class GuardRefusal(RefusedError):
    """A refused ban; ``reason`` is a short code (``cloudflare``, ``ignoreip``, ``private``...)."""

    def __init__(self, address: str, reason: str, message: str, *, hint: str | None) -> None:
        super().__init__(message, hint=hint)
        self.address = address
        self.reason = reason


class StateError(CfbanError):
    """The state database cannot be opened, migrated or written."""


class LogError(CfbanError):
    """A log file cannot be read."""


class CloudflareError(CfbanError):
    """Cloudflare answered with an error, or could not be reached.

    ``code`` is Cloudflare's error code when the answer carried one, ``status`` the HTTP status.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        status: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.status = status


class AuthError(CloudflareError):
    """The API token is invalid, expired, or lacks a permission."""


class NotFoundError(CloudflareError):
    """Cloudflare answered 404: the zone, account or resource does not exist (any more)."""


class RateLimitedError(CloudflareError):
    """Cloudflare kept answering 429 after the retries cfban allows itself."""


class RetryLaterError(RateLimitedError):
    """Rate-limited, by Cloudflare or by cfban's own budget; ``retry_after`` says how long
    (seconds) to wait before trying again, when that is known."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None,
        code: int | None = None,
        status: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status, hint=hint)
        self.retry_after = retry_after


class TransportError(CloudflareError):
    """A network error, a timeout, or an answer that is not Cloudflare's JSON envelope."""


class FirewallError(CfbanError):
    """The origin's firewall lock cannot be built, applied, refreshed or removed."""
