"""Where the bundled files are: ``filters/``, ``jails/`` and ``examples/``.

In an installed wheel they live inside the package (``cfban/_bundled/``); in a source checkout
(an editable install) they are the top-level folders of the repository.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def bundled_dir(name: str) -> Path:
    """The bundled folder ``name`` (``filters``, ``jails`` or ``examples``)."""
    inside = _PACKAGE / "_bundled" / name
    if inside.is_dir():
        return inside
    return _PACKAGE.parent / name


def filters_dir() -> Path:
    """The bundled fail2ban-format filters."""
    return bundled_dir("filters")


def jails_dir() -> Path:
    """The bundled fail2ban action and jail files."""
    return bundled_dir("jails")


def examples_dir() -> Path:
    """The bundled example logs and configuration."""
    return bundled_dir("examples")
