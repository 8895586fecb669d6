"""cfban: ban abusive clients at Cloudflare, on their real client address."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
