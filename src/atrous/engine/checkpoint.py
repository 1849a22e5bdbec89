"""Training checkpoints: atomic writes, safe loads, everything ``--resume`` needs.

A checkpoint holds the model, optimiser, scheduler and gradient-scaler states, the step,
the best metric so far, and the random-number states of Python, NumPy and torch (CPU and
CUDA), so that a resumed run continues exactly where the stopped one was. Files are
written to a temporary name in the same folder and renamed into place (``os.replace`` is
atomic on POSIX), so a crash mid-write never leaves a half-written ``last.pt`` in place of
a good one. Loading uses ``torch.load(weights_only=True)``: no arbitrary pickle runs.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..utils.atomic import atomic_write

LAST = "last.pt"
BEST = "best.pt"


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch generator states, in types ``weights_only`` loading accepts."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, keys, *rest = state["numpy"]
    random.setstate(_as_tuple(state["python"]))
    np.random.set_state((version, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(obj: Any) -> Any:
    # random.setstate needs tuples; a save/load round trip may hand back lists.
    return tuple(_as_tuple(x) for x in obj) if isinstance(obj, list | tuple) else obj


def load_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """:func:`atrous.utils.checkpoint_file.load_training_checkpoint` (read and check the file)."""
    from ..utils.checkpoint_file import load_training_checkpoint as read_and_check

    return read_and_check(path)


# -- one run per folder: starting, resuming, cleaning up -------------------------------------

METRICS = "metrics.jsonl"
CONFIG = "config.yaml"
# The folders a trainer writes into besides the run folder itself (stale temporary files).
RUN_SUBFOLDERS = ("best", "plots")


# The first line of the config.yaml a trainer writes: what tells its own file (left by a start
# that failed before its first step, which the next start may replace) from a user's.
RUN_CONFIG_HEADER = "# atrous train: the resolved configuration of this run\n"
# What a run writes into its folder besides last.pt and metrics.jsonl.
RUN_OUTPUTS = (
    CONFIG, "precision.json", "schedule.json", "best", "best.pt", "confusion_matrix.npy", "plots", "tensorboard",
)  # fmt: skip


def check_new_run_dir(run_dir: str | os.PathLike) -> None:
    """Refuse to start a new run in a folder that holds one — its ``last.pt`` would be
    overwritten and its ``metrics.jsonl`` would mix two runs — or that holds files of the
    names a run writes (a recipe, a model, plots) that no earlier start of a run wrote."""
    run_dir = Path(run_dir)
    _refuse_a_file(run_dir)
    if (run_dir / LAST).exists():
        raise ValueError(f"{run_dir} already holds a run (last.pt): pass --resume, or choose another --run-dir")
    if (run_dir / METRICS).exists():
        raise ValueError(
            f"{run_dir} already holds a run ({METRICS}) that wrote no last.pt to resume from: "
            f"choose another --run-dir, or delete {run_dir}"
        )
    present = [name for name in RUN_OUTPUTS if (run_dir / name).exists()]
    if present and not _written_by_a_start(run_dir / CONFIG):
        raise ValueError(
            f"{run_dir} holds {', '.join(present)}, which a new run would overwrite and no earlier run wrote: "
            "choose another --run-dir (the recipe and any weights to start from can stay where they are)"
        )


def _refuse_a_file(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"{run_dir} is a file, not a run folder: choose another --run-dir")


def _written_by_a_start(config_path: Path) -> bool:
    try:
        with config_path.open("rb") as f:
            return f.readline() == RUN_CONFIG_HEADER.encode()
    except OSError:
        return False


def open_run(
    run_dir: Path, config: Any, resume: bool | str | os.PathLike, *, world_size: int = 1, is_main: bool = True
) -> tuple[Path | None, dict[str, Any] | None]:
    """What every trainer does first, before any data or model is built (a refused start
    costs nothing): for a resume, load the checkpoint (``RUN/last.pt``, or the path given)
    and refuse a config that would train something else; for a new run, refuse a folder
    that holds one. Then clear temporary files of saves killed mid-write (on the main
    process). Returns ``(checkpoint path, checkpoint)``, both None for a new run."""
    path, checkpoint = None, None
    if resume:
        path = run_dir / LAST if resume is True else Path(resume)
        checkpoint = load_training_checkpoint(path)
        check_resume(config, checkpoint, path, world_size=world_size)
    else:
        check_new_run_dir(run_dir)
    if is_main:
        remove_stale_run_files(run_dir)
    return path, checkpoint


class RunLock:
    """An exclusive lock on a run folder while a trainer runs in it: ``flock`` on the folder
    itself (no lock file left behind), released by the kernel when the process ends,
    however it ends. Two trainers in one folder would interleave their checkpoints and
    logs; the second is refused."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        import fcntl

        run_dir = Path(run_dir)
        _refuse_a_file(run_dir)  # before mkdir, whose FileExistsError would not say so
        self.created = not run_dir.exists()  # by this lock: the trainer removes it again if its start is refused
        run_dir.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(run_dir, os.O_RDONLY)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise ValueError(
                f"{run_dir} is in use by another training run: wait for it to end, or choose another --run-dir"
            ) from None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def remove_stale_run_files(run_dir: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that saves killed mid-write (``kill -9``, power loss) left
    in the run folder and the folders a trainer writes into; print and return them."""
    from ..utils.atomic import remove_stale_temp_files

    run_dir = Path(run_dir)
    folders = (run_dir, *(run_dir / name for name in RUN_SUBFOLDERS))
    removed = [p for folder in folders for p in remove_stale_temp_files(folder)]
    if removed:
        names = ", ".join(str(p) for p in removed)
        print(f"removed {len(removed)} temporary file(s) left by an interrupted save: {names}", flush=True)
    return removed


def recorded_config(run_dir: str | os.PathLike) -> Path | dict[str, Any]:
    """What a run recorded as its config: ``RUN/config.yaml``, or where that file is gone
    the ``"config"`` saved in ``RUN/last.pt`` (``atrous train --resume`` starts from it)."""
    run_dir = Path(run_dir)
    if (run_dir / CONFIG).is_file():
        return run_dir / CONFIG
    checkpoint = load_training_checkpoint(run_dir / LAST)
    if not isinstance(checkpoint.get("config"), dict):
        raise ValueError(f"{run_dir} has no {CONFIG} and {run_dir / LAST} records no config: nothing to resume from")
    return checkpoint["config"]


def check_resume(config: Any, checkpoint: dict[str, Any], path: str | os.PathLike, *, world_size: int = 1) -> None:
    """Refuse to resume ``checkpoint`` with a config that would train something else.

    The checkpoint's ``"config"`` is what ran. ``config`` may differ from it only in
    :data:`atrous.config.RESUME_MAY_CHANGE` (cadence, logging, device, workers, evaluation);
    any other difference — a longer schedule, another lr, seed, batch, model — is refused,
    naming each key ``old → new``: the optimiser and scheduler states in the checkpoint
    carry the old values and would silently keep them. The ``config.yaml`` beside the
    checkpoint is cross-checked too, so a hand edit is named as such.
    """
    from ..config import ConfigError, config_differences, config_from_dict, parse_yaml, resume_may_change, show_change

    path = Path(path)
    raw = checkpoint.get("config")
    new_run = f"atrous train ... --run-dir NEW --set model.checkpoint_path={path}"
    if not isinstance(raw, dict):
        raise ValueError(
            f"cannot resume {path}: it records no config, so nothing shows it would continue the same run; "
            f"start a new run from its weights: {new_run}"
        )
    try:
        recorded = config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"cannot resume {path}: the config it records does not fit this atrous ({exc})") from None
    recorded_ws = checkpoint.get("world_size")
    if recorded_ws is not None and int(recorded_ws) != world_size:
        raise ValueError(
            f"cannot resume {path}: it was trained by {recorded_ws} process(es) and this run has {world_size}; "
            f"the batch each step sees would change. Resume with {recorded_ws} process(es) "
            "(torchrun --nproc_per_node), "
            f"or start a new run from its weights: {new_run}"
        )
    refused = [change for change in config_differences(recorded, config) if not resume_may_change(change[0])]
    if not refused:
        return
    edited: list[str] = []
    on_disk = path.parent / CONFIG
    if on_disk.is_file():
        try:
            edited = [
                key
                for key, _, _ in config_differences(recorded, config_from_dict(parse_yaml(on_disk.read_text()) or {}))
                if not resume_may_change(key)
            ]
        except (ValueError, TypeError, OSError, AttributeError):
            edited = ["(it no longer reads as a config)"]
    note = f" {on_disk} was edited after {path.name} was written ({', '.join(edited)}): restore it." if edited else ""
    raise ConfigError(
        f"cannot resume {path} with other values for what it trains: {'; '.join(show_change(*c) for c in refused)}."
        f"{note} A resumed run trains with the values it started with: resume without those changes "
        f"(`atrous train --help` lists the values that may change), or, to train with the new ones, start a new "
        f"run from its weights: {new_run}"
    )


def recorded_best(path: str | os.PathLike, step: int, key: str) -> float:
    """The best score ``BEST`` (``best.pt``) beside the checkpoint ``path`` records, if it is
    from this step or before; ``-inf`` otherwise. The checkpoint of a step is written before
    that step's evaluation, so a better score found then is only in ``best.pt``."""
    best = Path(path).parent / BEST
    if not best.is_file():
        return -float("inf")
    try:
        record = torch.load(best, map_location="cpu", weights_only=True)
        if int(record["step"]) <= step:
            return float(record[key])
    except Exception:  # an unreadable best.pt only loses this hint; the checkpoint's own value stands
        pass
    return -float("inf")
