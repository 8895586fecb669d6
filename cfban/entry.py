"""The ``cfban`` console script: the hook's and ``test-filter --json``'s fast paths first,
else the full command line."""

from __future__ import annotations

import gc
import os
import sys
from typing import NoReturn


def main() -> None:
    """Run cfban with ``sys.argv``."""
    args = sys.argv[1:]
    if args[:1] == ["test-filter"]:
        # checked first: the hook's imports (snapshot, rules, tomllib) are not needed here,
        # and the hook's fast path never takes a command line that starts with test-filter
        gc.disable()  # see _exit_now
        from cfban.testfilter import json_fast_path

        code = json_fast_path(args[1:])
        if code is not None:
            _exit_now(code)
        gc.enable()
    else:
        from cfban.intake.hook import fast_path

        code = fast_path(args)
    if code is not None:
        sys.exit(code)
    from cfban.cli import main as cli_main

    cli_main()


def _exit_now(code: int) -> NoReturn:
    """Exit once the output is flushed, without tearing the interpreter down: freeing every
    module, compiled regex and match one by one costs ``test-filter`` 8 ms or more, and
    nothing on its fast path waits for an exit handler (it starts no thread and sets up no
    logging).

    The cycle collector is off on that path for the same reason: a scan leaves little
    cyclic garbage (a few hundred to a few thousand objects per million lines, from its
    chunks, never per line), but allocates so many objects that collections cost 3 % of
    its time on a log with many matches.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
