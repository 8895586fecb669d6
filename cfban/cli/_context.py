"""What every command shares: the lazily loaded settings and the error-to-exit-code mapping."""

from __future__ import annotations

import logging
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cfban.errors import EXIT_ERROR, CfbanError

if TYPE_CHECKING:
    from cfban.config import Settings


@dataclass
class AppContext:
    """Per-invocation state: where the configuration comes from, loaded on first use."""

    config_path: Path | None = None
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from cfban.config import load_settings  # pydantic: only for commands that need it

            self._settings = load_settings(self.config_path)
        return self._settings

    def save_rules(self) -> None:
        """Cache the validated rules for the hook's fast path (see
        :mod:`cfban.intake.snapshot`); a failure to write only keeps the fast path off."""
        import os

        from cfban.errors import ConfigError
        from cfban.intake import snapshot

        try:
            rules = self.settings.rules()
        except ConfigError:
            return  # an unreadable token file: the command reports it when it needs it
        snapshot.save(rules, self.config_path, os.environ)


def app_context(ctx: typer.Context) -> AppContext:
    """The :class:`AppContext` of this invocation."""
    obj = ctx.find_root().obj
    if not isinstance(obj, AppContext):
        obj = AppContext()
        ctx.find_root().obj = obj
    return obj


def _report_bug(exc: BaseException) -> str:
    """Write the traceback of an unexpected error to a file; return the file's path."""
    with tempfile.NamedTemporaryFile(
        "w", prefix="cfban-crash-", suffix=".log", delete=False, encoding="utf-8"
    ) as handle:
        traceback.print_exception(exc, file=handle)
        return handle.name


def run_guarded(app: typer.Typer, args: list[str] | None = None) -> int:
    """Run the typer app; return its exit code, a :class:`CfbanError` as one line on stderr.

    Usage errors are typer's own (exit 2, with the usage line). Anything else that escapes is
    a bug: its traceback goes to a file and the user gets one line naming that file.
    """
    try:
        app(args=args, prog_name="cfban")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_ERROR)
    except CfbanError as exc:
        print(f"cfban: error: {exc}", file=sys.stderr)  # noqa: T201
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: keep the traceback, show one line
        path = _report_bug(exc)
        logging.getLogger(__name__).debug("unexpected error", exc_info=True)
        print(  # noqa: T201
            f"cfban: internal error: {type(exc).__name__}; the traceback is in {path}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return 0
