"""``python -m cfban``."""

from __future__ import annotations

from cfban.cli import main

main()
