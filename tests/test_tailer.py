"""Following files: appends, partial lines, every kind of rotation, resuming at a cursor."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cfban.tailer import MAX_LINE, Follower


def _append(path: Path, text: str) -> None:
    with path.open("ab") as handle:
        handle.write(text.encode())


def _texts(follower: Follower) -> list[str]:
    return [line.data.decode() for line in follower.read()]


def test_starts_at_end_unless_told(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("old 1\nold 2\n")
    assert _texts(Follower(log)) == []
    assert _texts(Follower(log, from_start=True)) == ["old 1", "old 2"]


def test_partial_line_waits_for_newline(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("")
    follower = Follower(log)
    _append(log, "one\ntw")
    assert _texts(follower) == ["one"]
    _append(log, "o\r\n")
    assert _texts(follower) == ["two"]
    assert _texts(follower) == []


def test_resume_at_cursor_exactly(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("")
    follower = Follower(log)
    _append(log, "1\n2\n3\n")
    lines = follower.read()
    assert [x.data for x in lines] == [b"1", b"2", b"3"]
    cursor = lines[1].cursor  # processed up to "2", then crashed
    follower.close()
    _append(log, "4\n")
    assert _texts(Follower(log, cursor)) == ["3", "4"]


def test_rename_and_create_loses_nothing(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("")
    follower = Follower(log)
    _append(log, "a\nb\n")
    assert _texts(follower) == ["a", "b"]
    _append(log, "c\n")
    log.rename(tmp_path / "a.log.1")
    _append(tmp_path / "a.log.1", "d\n")  # a writer still holding the old file
    _append(log, "e\n")
    assert _texts(follower) == ["c", "d", "e"]
    assert follower.rotations == 1


def test_copytruncate(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("")
    follower = Follower(log)
    _append(log, "a\nb\n")
    assert _texts(follower) == ["a", "b"]
    shutil.copy(log, tmp_path / "a.log.1")
    os.truncate(log, 0)
    _append(log, "c\n")
    assert _texts(follower) == ["c"]
    _append(log, "a much longer line than before\n")
    assert _texts(follower) == ["a much longer line than before"]
    assert follower.rotations == 1


def test_delete_and_recreate(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("")
    follower = Follower(log)
    _append(log, "a\n")
    assert _texts(follower) == ["a"]
    log.unlink()
    assert _texts(follower) == []
    log.write_text("b\n")
    assert _texts(follower) == ["b"]


def test_file_appearing_later_is_read_from_start(tmp_path: Path) -> None:
    log = tmp_path / "late.log"
    follower = Follower(log)
    assert follower.read() == []
    log.write_text("x\n")
    assert _texts(follower) == ["x"]


def test_cursor_of_other_file_is_not_trusted(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("first\nsecond\n")
    follower = Follower(log, from_start=True)
    cursor = follower.read()[-1].cursor
    follower.close()
    log.unlink()
    log.write_text("new first\n")
    assert _texts(Follower(log, cursor)) == ["new first"]


def test_huge_line_is_cut_and_the_rest_skipped(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("")
    follower = Follower(log)
    _append(log, "x" * (MAX_LINE * 3) + "\nnext\n")
    lines = follower.read()
    assert [len(x.data) for x in lines] == [MAX_LINE, 4]
    assert follower.truncated_lines == 1
    assert lines[-1].cursor.offset == log.stat().st_size


def test_lines_appended_to_the_old_file_after_the_switch_are_read(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("")
    follower = Follower(log)
    writer = open(log, "ab", buffering=0)  # noqa: SIM115 (a writer that has not reopened yet)
    writer.write(b"a\n")
    log.rename(tmp_path / "a.log.1")
    log.touch()  # logrotate "create"
    assert _texts(follower) == ["a"]
    assert follower.rotations == 1
    writer.write(b"b\n")  # nginx has not reopened its log yet
    writer.close()
    _append(log, "c\n")
    lines = follower.read()
    assert [x.data for x in lines] == [b"b", b"c"]
    assert lines[0].cursor.inode == log.stat().st_ino  # the new file's cursor, not the old's
    assert lines[-1].cursor.offset == 2


def test_copytruncate_regrown_past_the_cursor_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("")
    follower = Follower(log)
    _append(log, "first\n")
    assert _texts(follower) == ["first"]
    os.truncate(log, 0)
    _append(log, "one\ntwo\nthree\n")  # longer than before the truncate
    assert _texts(follower) == ["one", "two", "three"]
    assert follower.rotations == 1


def test_lines_left_by_a_limit_come_without_new_data(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("1\n2\n3\n")
    follower = Follower(log, from_start=True)
    assert [x.data for x in follower.read(2)] == [b"1", b"2"]
    lines = follower.read(2)
    assert [x.data for x in lines] == [b"3"]
    assert lines[0].cursor.offset == 6
    assert follower.read(2) == []
