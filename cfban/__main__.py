"""``python -m cfban``."""

from __future__ import annotations

from cfban.entry import main

main()
