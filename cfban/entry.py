"""The ``cfban`` console script: the hook's and ``test-filter --json``'s fast paths first,
else the full command line."""

from __future__ import annotations

import sys


def main() -> None:
    """Run cfban with ``sys.argv``."""
    args = sys.argv[1:]
    if args[:1] == ["test-filter"]:
        # checked first: the hook's imports (snapshot, rules, tomllib) are not needed here,
        # and the hook's fast path never takes a command line that starts with test-filter
        from cfban.testfilter import json_fast_path

        code = json_fast_path(args[1:])
    else:
        from cfban.intake.hook import fast_path

        code = fast_path(args)
    if code is not None:
        sys.exit(code)
    from cfban.cli import main as cli_main

    cli_main()
