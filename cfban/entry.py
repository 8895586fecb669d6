"""The ``cfban`` console script: the hook's and ``test-filter --json``'s fast paths first,
else the full command line."""

from __future__ import annotations

import sys


def main() -> None:
    """Run cfban with ``sys.argv``."""
    from cfban.intake.hook import fast_path

    code = fast_path(sys.argv[1:])
    if code is None and sys.argv[1:2] == ["test-filter"]:
        from cfban.testfilter import json_fast_path

        code = json_fast_path(sys.argv[2:])
    if code is not None:
        sys.exit(code)
    from cfban.cli import main as cli_main

    cli_main()
