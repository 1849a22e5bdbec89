"""What the reliability suites share (imported as ``tests._reliability``): running the
real CLI in a subprocess, and fingerprints of a folder to prove nothing was changed or
left half-written."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MAIN_MODULE = REPO_ROOT / "src" / "atrous" / "__main__.py"


def cli_env(cache: Path, **extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: this one, with a private precision cache, an
    empty torch.hub home and no dataset root (nothing is downloaded or read from the user).
    (Each start costs about 4 CPU-seconds with the bytecode `make setup` compiles at install,
    9 where Python may neither find nor write it: ``PYTHONDONTWRITEBYTECODE``.)"""
    env = dict(os.environ)
    env.update(
        ATROUS_CACHE=str(cache),
        TORCH_HOME=str(cache / "torch_home"),
        ATROUS_DATA=str(cache / "no_data"),
    )
    env.update(extra)
    return env


@dataclass
class CliResult:
    argv: list[str]
    returncode: int | None  # None: timed out
    stdout: str
    stderr: str
    seconds: float  # wall clock
    cpu_seconds: float  # user + system time of the process

    def describe(self) -> str:
        return (
            f"$ atrous {' '.join(self.argv)}\nexit {self.returncode} after {self.seconds:.1f} s "
            f"({self.cpu_seconds:.1f} CPU s)\n"
            f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}"
        )


def run_cli(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> CliResult:
    """``python -m atrous ARGV`` in ``cwd``: the real entry point, in its own process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "atrous", *argv], cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL
        )
        code, cpu = _wait(proc, timeout)
        texts = []
        for f in (out, err):
            f.seek(0)
            texts.append(f.read().decode(errors="replace"))
    return CliResult(list(argv), code, texts[0], texts[1], time.perf_counter() - start, cpu)


class ForkedCli:
    """``atrous ARGV`` in processes forked from one server that imported atrous once.

    Each invocation is its own process — its own exit code, stdout, stderr, working folder,
    environment and signal handlers — running the CLI's ``main`` as ``python -m atrous``
    does; only the interpreter start and the imports (4 CPU-seconds a process, nearly all
    of a bad-input case) are paid once. The server (multiprocessing's ``forkserver``) runs
    no torch operation before it forks, so no thread pool is copied into a child.
    """

    def __init__(self) -> None:
        import multiprocessing

        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["atrous.cli", "tests._reliability"])

    def start(self, argv: list[str], *, cwd: Path, env: dict[str, str], out: Path, err: Path | None = None):
        """Start ``atrous ARGV`` (stderr into ``out`` too when ``err`` is None); return its
        ``multiprocessing`` process (``pid``, ``is_alive()``, ``join()``, ``exitcode``: the
        exit code, or minus the signal that killed it)."""
        cpu = Path(str(out) + ".cpu")
        process = self._context.Process(
            target=_forked_main, args=(list(argv), str(cwd), env, str(out), str(err) if err else None, str(cpu))
        )
        process.start()
        return process

    def run(self, argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> CliResult:
        with tempfile.TemporaryDirectory() as folder:
            out, err = Path(folder) / "stdout", Path(folder) / "stderr"
            start = time.perf_counter()
            process = self.start(argv, cwd=cwd, env=env, out=out, err=err)
            process.join(timeout)
            timed_out = process.is_alive()
            if timed_out:
                process.kill()
                process.join()
            seconds = time.perf_counter() - start
            texts = [p.read_text(errors="replace") if p.is_file() else "" for p in (out, err)]
            cpu = Path(str(out) + ".cpu")
            cpu_seconds = float(cpu.read_text()) if cpu.is_file() else 0.0
            recorded = Path(str(out) + ".exit")
            recorded_code = int(recorded.read_text()) if recorded.is_file() else None
        code = None if timed_out else process.exitcode
        if code == _FORKSERVER_LOST and recorded_code is not None:
            # multiprocessing reports 255 when it cannot read the child's status from the
            # forkserver (popen_forkserver.poll), not because atrous exited so: the child
            # wrote the code it exits with just before exiting.
            code = recorded_code
        return CliResult(list(argv), code, texts[0], texts[1], seconds, cpu_seconds)


_FORKSERVER_LOST = 255


def _forked_main(argv: list[str], cwd: str, env: dict[str, str], out: str, err: str | None, cpu: str) -> None:
    """The child of :class:`ForkedCli`: ``python -m atrous ARGV`` from its ``main`` on."""
    import resource
    import traceback

    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fds, path in (((1,) if err else (1, 2), out), ((2,), err)):
        if path is None:
            continue
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for fd in fds:
            os.dup2(target, fd)
        os.close(target)
    code = 1
    try:
        import torch

        if env.get("OMP_NUM_THREADS"):  # read by OpenMP at import, in the server: set it here
            torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
        from atrous.cli import main

        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors (2), --help and --version (0)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:  # what the interpreter would do with an uncaught exception
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        Path(cpu).write_text(str(usage.ru_utime + usage.ru_stime))
        Path(out + ".exit").write_text(str(code if isinstance(code, int) else int(code is not None)))
    # Not os._exit: multiprocessing's exit then stops the process's own children (DataLoader
    # workers) as the interpreter's exit would, instead of leaving them behind.
    sys.exit(code)


def _wait(proc: subprocess.Popen, timeout: float) -> tuple[int | None, float]:
    """Reap ``proc`` (killed after ``timeout`` s): its exit code (None: timed out) and CPU seconds."""
    deadline = time.monotonic() + timeout
    timed_out = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            timed_out = True
            break
        time.sleep(0.02)
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped here: Popen must not wait for it again
    return (None if timed_out else code), usage.ru_utime + usage.ru_stime


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(root: Path) -> dict[str, str]:
    """``relative path -> sha256`` of every regular file under ``root``."""
    return {p.relative_to(root).as_posix(): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def temp_leftovers(root: Path) -> list[str]:
    """Temporary files or folders (``*.tmp``) anywhere under ``root``."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.tmp"))


def is_allowed(rel: str, allowed: tuple[str, ...]) -> bool:
    """``rel`` matches one of the ``allowed`` globs, or lies under one of them (a folder)."""
    return any(fnmatch.fnmatch(rel, a) or rel.startswith(a.rstrip("/") + "/") for a in allowed)


def changed_files(before: dict[str, str], root: Path, allowed: tuple[str, ...] = ()) -> list[str]:
    """Files of ``before`` that are gone or differ now, except those :func:`is_allowed`."""
    after = fingerprint(root)
    changed = []
    for rel, digest in before.items():
        if is_allowed(rel, allowed):
            continue
        if rel not in after:
            changed.append(f"{rel} (removed)")
        elif after[rel] != digest:
            changed.append(f"{rel} (modified)")
    return changed


def dead_pid() -> int:
    """A process id that no running process has (for a stale temporary file's name)."""
    for pid in range(4_194_303, 1, -1):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    raise RuntimeError("no free process id")
