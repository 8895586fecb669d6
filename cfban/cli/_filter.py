"""``cfban test-filter``: run a filter over a log, like ``fail2ban-regex``.

Thin: :func:`cfban.testfilter.scan_log` does the work; this module only formats its report,
as one JSON object (``--json``) or as a summary for people.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from cfban.testfilter import FilterReport

_HELP = """Run a fail2ban-format filter over a log file and show what it finds.

FILTER is a bundled filter name (nginx-probes, nginx-botsearch, nginx-http-auth,
nginx-limit-req, nginx-bad-request, nginx-forbidden, nginx-4xx), a filter in
/etc/fail2ban/filter.d, or the path of a .conf file, with filter options in brackets as in
a fail2ban jail. LOG is an nginx access or error log, or - for standard input. As with
fail2ban-regex, empty lines and lines starting with # are skipped.

\b
Examples:
  cfban test-filter nginx-probes examples/access.log
  cfban test-filter 'nginx-http-auth[mode=aggressive]' /var/log/nginx/error.log
  cfban test-filter ./my-filter.conf /var/log/nginx/access.log
  zcat access.log.2.gz | cfban test-filter nginx-4xx - --json

With --json it prints one JSON object: {"lines": N, "matched": M, "ignored": K,
"matches": [{"line": n, "ip": "...", "time": epoch-seconds-or-null}]}. Line numbers start
at 1; "ignored" counts lines a failregex matched but an ignoreregex dropped.

Exit codes: 0 ok (also when nothing matched), 1 the log cannot be read, 78 the filter is
broken (the message names the file and line).
"""


_SHOWN_REGEX_CHARS = 110
_SHOWN_LINE_CHARS = 140
_TOP_ADDRESSES = 10


def run_test_filter(
    filter_spec: Annotated[
        str,
        typer.Argument(
            metavar="FILTER", help="Bundled filter name or .conf path, optionally [opt=val]."
        ),
    ],
    log_path: Annotated[
        str, typer.Argument(metavar="LOG", help="The log file to read; - for standard input.")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a summary.")
    ] = False,
) -> None:
    from cfban.testfilter import scan_log

    report = scan_log(filter_spec, log_path)
    if as_json:
        typer.echo(json.dumps(report.to_json(), separators=(",", ":")))
        return
    typer.echo(render_summary(report))


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "(no date)"
    return datetime.fromtimestamp(epoch).astimezone().isoformat(sep=" ", timespec="seconds")


def render_summary(report: FilterReport) -> str:
    """The report as text for people, in the spirit of ``fail2ban-regex``'s output."""
    out = [
        f"Filter:  {report.filter_name}",
        *(f"         {path}" for path in report.filter_files),
        f"Log:     {report.source}",
        "",
        f"Lines: {report.lines} lines, {report.ignored} ignored, {report.matched} matched, "
        f"{report.missed} missed",
        "",
        f"Failregex: {sum(report.regex_hits)} hits",
    ]
    for number, (regex, hits) in enumerate(
        zip(report.failregex, report.regex_hits, strict=True), start=1
    ):
        out.append(f"  {number}) [{hits}] {_shorten(regex, _SHOWN_REGEX_CHARS)}")
    if report.ignoreregex:
        out.append(f"Ignoreregex: {len(report.ignoreregex)}, {report.ignored} lines ignored")
        out.extend(f"  - {_shorten(r, _SHOWN_REGEX_CHARS)}" for r in report.ignoreregex)
    if report.date_formats:
        out.append("Date formats seen:")
        out.extend(f"  [{n}] {fmt}" for fmt, n in report.date_formats.most_common())
    if report.matches:
        undated = sum(1 for m in report.matches if m.time is None)
        if undated:
            out.append(f"Matches without a date: {undated}")
        addresses = Counter(m.ip for m in report.matches)
        out += ["", f"Addresses ({len(addresses)}; most failures first):"]
        out.extend(f"  {ip:<40} {n}" for ip, n in addresses.most_common(_TOP_ADDRESSES))
        if len(addresses) > _TOP_ADDRESSES:
            out.append(f"  ... and {len(addresses) - _TOP_ADDRESSES} more")
        out += ["", "First matches:"]
        by_line = {m.line: m for m in report.matches}
        for number, text in report.sample_lines:
            match = by_line[number]
            out.append(f"  line {number}: {match.ip} at {_when(match.time)}")
            out.append(f"    {_shorten(text, _SHOWN_LINE_CHARS)}")
    else:
        out += ["", "No line matched."]
    return "\n".join(out)


def register(app: typer.Typer) -> None:
    """Add ``test-filter`` to ``app``."""
    app.command("test-filter", help=_HELP, no_args_is_help=True)(run_test_filter)
