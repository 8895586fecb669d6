"""The public entry point of the fail2ban layer: a filter spec in, a ready :class:`Filter` out."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import tzinfo
from pathlib import Path

from cfban._resources import filters_dir
from cfban.fail2ban._filter import Filter
from cfban.fail2ban._loader import load_definition

#: Where stock fail2ban keeps its filters on Debian.
SYSTEM_FILTER_DIR = Path("/etc/fail2ban/filter.d")


def default_search_path() -> tuple[Path, ...]:
    """cfban's bundled filters first, then the system's fail2ban filters."""
    return (filters_dir(), SYSTEM_FILTER_DIR)


def load_filter(
    spec: str,
    *,
    search_path: Sequence[Path] | None = None,
    jail_options: Mapping[str, str] | None = None,
    tz: tzinfo | None = None,
    now: Callable[[], float] | None = None,
) -> Filter:
    """Load the filter named by ``spec`` (``name`` or ``name[opt=val, ...]``), ready to match.

    The filter's files are looked up in ``search_path`` (default: :func:`default_search_path`),
    interpolated as fail2ban's client does, and compiled. ``tz`` is the zone for dates without
    an offset (default: the host's local time, like fail2ban) unless the filter or jail sets
    ``logtimezone``; ``now`` is the clock used for dates without a year and ``{NONE}`` dates.

    Raises:
        FilterError: the filter cannot be found or read, or one of its regexes is invalid.
    """
    path = tuple(search_path) if search_path is not None else default_search_path()
    definition = load_definition(spec, search_path=path, jail_options=jail_options)
    return Filter(definition, now=now, tz=tz)
