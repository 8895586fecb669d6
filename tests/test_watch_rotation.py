"""``cfban watch`` under rotation: a writer appends numbered lines at a steady rate while the
log is rotated 20 times, and the daemon must see every line exactly once.

The writer behaves like nginx: it keeps its file open (``O_APPEND``) and reopens the path only
when told (nginx does on ``USR1``, sent by logrotate's postrotate), so after a rename or a
delete it keeps writing to the old file for a moment. Each kind:

* rename + create (logrotate ``create``): rename to ``.1``, create an empty file, let the writer
  go on into the old file for a few ms, then make it reopen;
* delete + recreate: unlink, let the writer go on into the deleted file, then make it reopen
  (``O_CREAT`` recreates the path);
* copytruncate: logrotate copies the file and then truncates it; whatever is written in between,
  and whatever the follower had not read when the truncate came, is lost — inherent to
  copytruncate, for cfban as for fail2ban. So the writer pauses, the test waits for the daemon
  to have read everything, then copies and truncates, and the writer resumes.

Every line seen by the daemon's pipeline is recorded by its number: the numbers seen must be
exactly ``0 .. written-1``, each once, and the jail's failure count must equal the lines written.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from cfban.config import load_settings
from cfban.watch import Daemon, WatchOptions
from cfban.watch._jails import JailRuntime
from cfban.watch._pipeline import Decided

ROTATIONS = 20
LINE = '203.0.113.{last} - - [{date}] "GET /.env HTTP/1.1" 404 153 "-" "curl/8 n={n}"\n'
NUMBER = re.compile(r"n=(\d+)")


class Writer(threading.Thread):
    """Appends numbered matching lines every ``interval`` seconds, nginx-style."""

    def __init__(self, path: Path, interval: float = 0.001) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.interval = interval
        self.written = 0
        self.pause = threading.Lock()
        self._reopen = threading.Event()
        self._reopened = threading.Event()
        self._halt = threading.Event()
        self._fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def run(self) -> None:
        date = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
        while not self._halt.is_set():
            with self.pause:
                if self._reopen.is_set():
                    os.close(self._fd)
                    self._fd = self._open()
                    self._reopen.clear()
                    self._reopened.set()
                n = self.written
                line = LINE.format(last=1 + n % 200, date=date, n=n)
                os.write(self._fd, line.encode())
                self.written += 1
            time.sleep(self.interval)
        os.close(self._fd)

    def reopen(self) -> None:
        """Make the writer reopen the path (nginx's USR1) and wait until it did."""
        self._reopened.clear()
        self._reopen.set()
        assert self._reopened.wait(5)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def _wait(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.01)
    return check()


def _rotate(kind: str, log: Path, writer: Writer, caught_up: Callable[[], bool]) -> None:
    old = log.with_name(log.name + ".1")
    if kind == "rename":
        log.rename(old)
        log.touch()  # logrotate's "create"
        time.sleep(random.uniform(0, 0.02))  # the writer still appends to the old file
        writer.reopen()
    elif kind == "delete":
        log.unlink()
        time.sleep(random.uniform(0, 0.02))  # the writer appends to the deleted file
        writer.reopen()  # O_CREAT recreates the path
    else:
        with writer.pause:  # logrotate's copy..truncate window is inherently lossy
            assert _wait(caught_up, 5), "the daemon did not catch up before the truncate"
            shutil.copyfile(log, old)
            os.truncate(log, 0)


@pytest.mark.parametrize("kind", ["rename", "copytruncate", "delete"])
def test_no_line_lost_or_counted_twice_under_rotation(tmp_path: Path, kind: str) -> None:
    random.seed(kind)
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "access.log"
    conf = tmp_path / "cfban.toml"
    conf.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        "[realip]\nallow_test_nets = true\n"
        f'[jails.rot]\nfilter = "nginx-probes"\nlogpath = ["{log}"]\n'
        'maxretry = 100000000\nfindtime = "1d"\nbantime = "1h"\n',
        encoding="utf-8",
    )
    settings = load_settings(conf, env={})
    writer = Writer(log)
    daemon = Daemon(settings, WatchOptions(poll=0.05))
    seen: list[int] = []
    process = daemon.pipeline.process_lines

    def recording(
        jails: Sequence[JailRuntime], lines: Sequence[bytes], *, live: bool, source: str
    ) -> list[Decided]:
        for raw in lines:
            found = NUMBER.search(raw.decode())
            assert found is not None, raw
            seen.append(int(found.group(1)))
        return process(jails, lines, live=live, source=source)

    daemon.pipeline.process_lines = recording  # type: ignore[method-assign]
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        assert _wait(lambda: bool(daemon._files))
        writer.start()
        for _ in range(ROTATIONS):
            time.sleep(random.uniform(0.05, 0.12))
            _rotate(kind, log, writer, lambda: len(seen) == writer.written)
        time.sleep(0.05)
        writer.stop()
        _wait(lambda: len(seen) >= writer.written, 10)
        time.sleep(0.3)  # a line read twice would show up now
    finally:
        writer.stop()
        daemon.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
    written = writer.written
    assert written > 20 * ROTATIONS
    missing = sorted(set(range(written)) - set(seen))
    assert not missing, f"{len(missing)} of {written} lines lost, first {missing[:10]}"
    assert len(seen) == len(set(seen)) == written, "some line was counted twice"
    assert daemon.metrics.failures["rot"] == written
    assert daemon.metrics.lines == written
    assert daemon.metrics.rotations >= ROTATIONS
    print(f"{kind}: {written} lines, {daemon.metrics.rotations} rotations, none lost or repeated")
