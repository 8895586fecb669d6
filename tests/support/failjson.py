"""fail2ban's annotated sample logs (``# failJSON:``), read and checked the way fail2ban does.

A sample log is a log file with JSON annotations (fail2ban-format.md §5.1)::

    # filterOptions: [{"mode": "normal"}, {"mode": "aggressive"}]
    # failJSON: {"time": "2005-08-14T12:00:00", "match": true, "host": "192.0.2.1"}
    2005/08/14 12:00:00 [error] ... client: 192.0.2.1, ...
    a line with no annotation must not match

API:

``read_samples(path, name=None) -> list[Sample]``
    one :class:`Sample` per (test line, filter option set), in file order; ``# addFILE:``
    files (next to ``path``) are read after it; ``test.condition`` blocks and failJSON
    ``constraint`` s are evaluated with ``name`` (default: the file name) and ``opts``.
``check_sample(matcher, sample) -> str | None``
    one sample through a :class:`LineMatcher`: why it disagrees, or ``None``.
``check_samples(samples, make_filter) -> SampleReport``
    runs every sample through a filter made per option set (``make_filter(options)`` gets the
    options without ``test.*`` keys; one stateful :class:`LineMatcher` per set, as fail2ban
    reuses one filter object) and compares with the annotation (§5.2).
``harness_filter(name, options, search_path=...) -> Filter``
    a filter loaded the way fail2ban's harness sets it up (raw hosts, its clock); a ready
    ``make_filter`` is ``functools.partial(harness_filter, name, search_path=[dir])``.
``greedy_before_host(flt) -> list[int]``
    the failregexes fail2ban's harness rejects: a greedy ``.*``/``.+`` before ``<HOST>`` that is
    not hard-anchored at the end.
``harness_time()``
    a context manager that sets ``TZ=CET-01CEST-02,M3.5.0,M10.5.0`` (restored afterwards);
    use :data:`TEST_NOW` as the filter's "now".
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cfban._resources import filters_dir
from cfban.clock import SystemClock
from cfban.fail2ban._dates import DateDetector
from cfban.fail2ban._filter import Filter
from cfban.fail2ban._loader import load_definition
from cfban.fail2ban._matcher import LineMatcher
from cfban.fail2ban._model import Failure
from cfban.fail2ban._regex import expand_tags
from cfban.fail2ban._search import normalize_host

#: Debian's fail2ban: its stock filters, and the annotated sample logs it ships beside them.
STOCK_FILTERS = Path("/etc/fail2ban/filter.d")
STOCK_SAMPLES = Path("/usr/lib/python3/dist-packages/fail2ban/tests/files/logs")
#: The annotated samples of cfban's bundled filters, one file per filter.
BUNDLED_SAMPLES = Path(__file__).resolve().parent.parent / "samples"
#: The bundled filters (not their ``-common`` includes).
BUNDLED = sorted(p.stem for p in filters_dir().glob("*.conf") if not p.stem.endswith("-common"))

TEST_NOW = 1124013600.0  # 2005-08-14 10:00:00 UTC, fail2ban's test "now"
TEST_TZ = "CET-01CEST-02,M3.5.0,M10.5.0"

_ANNOTATION = re.compile(r"^#+ ?(failJSON|(?:file|filter)Options|addFILE):(.+)$")
_NOT_COMPARED = frozenset({"time", "match", "desc", "constraint"})


@dataclass(frozen=True)
class Sample:
    """One test line under one filter option set.

    ``expect`` is the failJSON dict, or ``None`` for a line that must not match; ``options``
    the option set (``test.*`` keys included; :func:`filter_options` drops them).
    """

    path: Path
    lineno: int
    line: str
    expect: Mapping[str, Any] | None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def must_match(self) -> bool:
        return bool(self.expect and self.expect.get("match", False))

    def where(self) -> str:
        return f"{self.path.name}:{self.lineno}"


def stock_with_samples() -> list[str]:
    """The stock filters that have a sample log (none when fail2ban is not installed)."""
    if not STOCK_FILTERS.is_dir() or not STOCK_SAMPLES.is_dir():
        return []
    return sorted(
        p.stem
        for p in STOCK_FILTERS.glob("*.conf")
        if not p.name.endswith("common.conf") and (STOCK_SAMPLES / p.stem).is_file()
    )


def filter_options(options: Mapping[str, Any]) -> dict[str, str]:
    """The options passed to the filter: everything but the harness-only ``test.*`` keys."""
    return {k: str(v) for k, v in options.items() if not k.startswith("test.")}


def options_key(options: Mapping[str, Any]) -> str:
    """A stable key for an option set (one filter object per key)."""
    return json.dumps(dict(options), sort_keys=True)


def _evaluate(expression: str, name: str, opts: Mapping[str, Any]) -> bool:
    # The sample files are fail2ban's own test data: a Python expression over name and opts.
    return bool(eval(expression, {"__builtins__": {}}, {"name": name, "opts": opts}))


def read_samples(path: Path, name: str | None = None) -> list[Sample]:
    """Every test line of ``path`` (and of the files it adds) under each of its option sets."""
    name = name or path.name
    files = [path]
    samples: list[Sample] = []
    for current in files:
        samples.extend(_read_file(current, name, files))
    return samples


def _read_file(path: Path, name: str, files: list[Path]) -> Iterator[Sample]:
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    common: dict[str, Any] = {}
    option_sets: list[dict[str, Any]] = []
    ignore_block = False
    index = 0
    while index < len(lines):
        line, lineno = lines[index], index + 1
        index += 1
        expect: dict[str, Any] | None = None
        annotation = _ANNOTATION.match(line)
        if annotation:
            kind, data = annotation.group(1), json.loads(annotation.group(2))
            if kind == "fileOptions":
                common = dict(data)
                continue
            if kind == "filterOptions":
                option_sets, ignore_block = [], False
                for entry in data if isinstance(data, list) else [data]:
                    opts = {**common, **entry}
                    if opts.get("test.condition"):
                        ignore_block = not _evaluate(opts["test.condition"], name, opts)
                    if not ignore_block:
                        option_sets.append(opts)
                continue
            if kind == "addFILE":
                files.append(path.parent / str(data))
                continue
            expect = dict(data)
            if index >= len(lines):
                break
            line, lineno = lines[index], index + 1
            index += 1
        elif ignore_block or line.startswith("#") or not line.strip():
            continue
        if ignore_block:
            continue
        for opts in option_sets or [{}]:
            constraint = (expect or {}).get("constraint")
            if constraint and not _evaluate(constraint, name, opts):
                continue
            yield Sample(path, lineno, line.rstrip("\r\n"), expect, opts)


def _same_host(actual: Any, expected: Any) -> bool:
    if actual is None or expected is None:
        return actual is expected
    return normalize_host(str(actual)) == normalize_host(str(expected))


def _actual(failure: Failure, key: str) -> Any:
    value: Any = failure.groups.get(key)
    if value is None and key == "host":
        value = failure.host
    if key == "attempts":
        value = len(failure.lines)
    if key == "users" and value is not None:
        value = sorted(value.split("\n"))
    return value


def expected_time(text: str) -> float:
    """A failJSON ``time`` (local time, ``YYYY-MM-DDTHH:MM:SS[.ffffff]``) as epoch seconds."""
    fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in text else "%Y-%m-%dT%H:%M:%S"
    local = datetime.strptime(text, fmt)
    return time.mktime(local.timetuple()) + local.microsecond / 1_000_000


def compare(sample: Sample, failures: Sequence[Failure]) -> str | None:
    """Why ``failures`` (from check-all matching) disagree with ``sample``, or ``None``."""
    found = [f for f in failures if f.host is not None and "nofail" not in f.groups]
    if not found:
        return "not matched, but should match" if sample.must_match else None
    if not sample.must_match:
        return f"matched (host {found[0].host!r}), but should not match"
    if len(found) > 1:
        return f"several failregexes matched: {[f.regex_index for f in found]}"
    failure = found[0]
    assert sample.expect is not None
    for key, want in sample.expect.items():
        if key in _NOT_COMPARED:
            continue
        got = _actual(failure, key)
        if key in ("host", "ip"):
            same = _same_host(got, want)
        elif isinstance(want, list):
            same = got is not None and sorted(got) == sorted(want)
        else:
            same = got == want
        if not same:
            return f"{key}: got {got!r}, want {want!r}"
    want_time = sample.expect.get("time")
    if want_time is not None and failure.time != expected_time(want_time):
        return f"time: got {failure.time!r}, want {expected_time(want_time)!r} ({want_time})"
    return None


def run_sample(matcher: LineMatcher, sample: Sample) -> list[Failure]:
    """Feed one sample line as fail2ban's harness does (every failregex tried).

    ``logtype: journal`` lines skip date detection: their time is :data:`TEST_NOW` and
    ``test.prefix-line`` is put in front of them.
    """
    if sample.options.get("logtype") == "journal":
        line = str(sample.options.get("test.prefix-line", "")) + sample.line
        return matcher.feed(line, known_time=TEST_NOW, check_all=True)
    return matcher.feed(sample.line, check_all=True)


def check_sample(matcher: LineMatcher, sample: Sample) -> str | None:
    """Why ``matcher`` disagrees with one sample, or ``None`` when it agrees."""
    return compare(sample, run_sample(matcher, sample))


@dataclass
class SampleReport:
    """The outcome of :func:`check_samples`."""

    checked: int = 0
    problems: list[str] = field(default_factory=list)
    used_regexes: dict[str, set[int]] = field(default_factory=dict)
    regex_texts: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def agreed(self) -> int:
        return self.checked - len(self.problems)

    def unused_regexes(self) -> list[str]:
        """``options-key: index`` of failregexes no sample hit (fail2ban's harness wants none).

        As in fail2ban, a failregex counts as used if its index was hit under its option set,
        or the same regex text was hit under any option set.
        """
        used_texts = {
            texts[i] for key, texts in self.regex_texts.items() for i in self.used_regexes[key]
        }
        return [
            f"{key}: failregex {i}"
            for key, texts in self.regex_texts.items()
            for i, text in enumerate(texts)
            if i not in self.used_regexes[key] and text not in used_texts
        ]


def check_samples(
    samples: Sequence[Sample], make_filter: Callable[[dict[str, str]], Filter]
) -> SampleReport:
    """Check every sample against a filter built per option set; see the module docstring."""
    report = SampleReport()
    matchers: dict[str, LineMatcher] = {}
    for sample in samples:
        key = options_key(filter_options(sample.options))
        matcher = matchers.get(key)
        if matcher is None:
            flt = make_filter(filter_options(sample.options))
            matcher = matchers[key] = LineMatcher(flt)
            report.regex_texts[key] = tuple(r.pattern.pattern for r in flt.compiled.failregex)
            report.used_regexes[key] = set()
        failures = run_sample(matcher, sample)
        report.used_regexes[key].update(f.regex_index for f in failures)
        report.checked += 1
        problem = compare(sample, failures)
        if problem is not None:
            report.problems.append(f"{sample.where()} {dict(sample.options)}: {problem}")
    return report


_HOST = re.escape(expand_tags("<HOST>", usedns="yes"))
_WRONG_GREED = re.compile(r"\.[+\*](?!\?)[^\$\^]*" + _HOST + r".*(?:\.[+\*].*|[^\$])$")


def greedy_before_host(flt: Filter) -> list[int]:
    """Indexes of failregexes with a greedy catch-all before ``<HOST>`` (fail2ban rejects them).

    Only regexes compiled with ``<HOST>`` as name-or-address count, as in fail2ban's harness
    (:func:`harness_filter` compiles them so).
    """
    return [
        i
        for i, regex in enumerate(flt.compiled.failregex)
        if _WRONG_GREED.search(regex.pattern.pattern)
    ]


def filter_spec(name: str, options: Mapping[str, str]) -> str:
    """``name[key="value", ...]``: the filter spec that passes ``options`` to filter ``name``."""
    if not options:
        return name
    args = ", ".join(f"{key}={json.dumps(value)}" for key, value in options.items())
    return f"{name}[{args}]"


def harness_filter(name: str, options: Mapping[str, str], *, search_path: Sequence[Path]) -> Filter:
    """Filter ``name`` with ``options``, set up as fail2ban's sample harness sets it up.

    Hosts are raw (``<HOST>`` also takes names, none is resolved); of the filter's settings
    only the regexes, ``maxlines`` and ``datepattern`` count (no ``usedns``, no
    ``logtimezone``); "now" is :data:`TEST_NOW`. Run it inside :func:`harness_time`.

    Raises:
        FilterError: the filter cannot be loaded.
    """
    definition = load_definition(filter_spec(name, options), search_path=search_path)
    definition = dataclasses.replace(definition, usedns="raw", logtimezone=None)
    clock = _HarnessClock()
    dates = DateDetector(definition.datepattern, now=clock)
    clock.stop_at(TEST_NOW)
    return Filter(definition, dates=dates, now=clock)


class _HarnessClock:
    """fail2ban's test clock, in two steps.

    fail2ban computes the ``%ExY`` window of plausible years from the wall clock at start-up
    (stretched back to the test date), so sample dates up to the present are years; every
    other "now" of its harness is ``TEST_NOW``. The detector fixes its window when built, so
    it is built while this clock runs, and the clock is stopped at ``TEST_NOW`` after.
    """

    def __init__(self) -> None:
        self._stopped: float | None = None

    def stop_at(self, epoch: float) -> None:
        self._stopped = epoch

    def __call__(self) -> float:
        return SystemClock().now() if self._stopped is None else self._stopped


@contextmanager
def harness_time() -> Iterator[None]:
    """Run with fail2ban's test time zone (``TZ``), restoring the previous one afterwards."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = TEST_TZ
    time.tzset()
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = previous
        time.tzset()
