import os
import stat

import pytest

from atrous.utils.atomic import atomic_write, atomic_write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "a.txt", "old")

    def broken(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_written_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600


def test_stale_temp_files_of_dead_processes_are_removed_and_nothing_else(tmp_path):
    import subprocess
    import sys

    from atrous.utils.atomic import remove_stale_temp_files, temp_prefix

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".last.pt.atrous-{dead_pid}-abc123.tmp"
    stale.write_bytes(b"half")
    stale_dir = tmp_path / f".int8.atrous-{dead_pid}-x9.tmp"
    stale_dir.mkdir()
    (stale_dir / "model.xml").write_text("x")
    mine = tmp_path / f"{temp_prefix('a.png')}q1.tmp"  # this process is writing it
    mine.write_bytes(b"")
    users = [tmp_path / ".notes.tmp", tmp_path / "photo.png", tmp_path / ".x.atrous-1-.tmp"]
    for path in users:
        path.write_bytes(b"keep")
    removed = remove_stale_temp_files(tmp_path)
    assert sorted(removed) == sorted([stale, stale_dir])
    assert mine.exists() and all(p.exists() for p in users)
    assert remove_stale_temp_files(tmp_path / "missing") == []


def test_temporary_names_carry_the_writer_pid(tmp_path):
    seen = []
    atomic_write(tmp_path / "c.bin", lambda tmp: (seen.append(os.path.basename(tmp)), open(tmp, "wb").close()))
    assert seen[0].startswith(f".c.bin.atrous-{os.getpid()}-") and seen[0].endswith(".tmp")
