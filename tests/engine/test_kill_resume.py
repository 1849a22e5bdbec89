"""Fault injection: ``kill -9`` a training run at random moments, resume it each time, and
end with the run that was never interrupted, bit for bit.

A tiny run (U-Net, 32×32 synthetic shapes, CPU, deterministic, a checkpoint after every
step, an evaluation halfway and at the end) is trained once without interruption as the
reference, in a process of its own, while the same recipe is started in another process
and SIGKILLed again and again:

* inside a checkpoint save: the test watches the run folder for this process's
  ``.last.pt.atrous-PID-XXXX.tmp`` and kills the moment one appears. The first kill is
  always inside the very first save: no ``last.pt`` exists yet, so the next start must be
  a fresh one, not ``--resume`` (and it must clear the temporary file);
* inside the evaluation halfway (the third kill): the moment the checkpoint of that step
  is renamed into place, before its evaluation is logged;
* between saves: a random delay after training has begun;
* during start-up: a random delay after the process starts (importing, building).

After every kill, the ``last.pt`` that is there must load and its step may only have
grown; the next start is ``--resume`` when it exists and a fresh start when it does not.
At the end the run's final weights (``last.pt``'s model and optimiser state, ``best/``)
must equal the reference's (``torch.equal`` on every tensor), its ``metrics.jsonl`` must
read as the reference's (every step and evaluation once, same values but the times), and
no temporary file may remain in the run folder.

``pytest --kills N`` (or ``ATROUS_KILLS=N``) sets the number of kills (default 10);
``ATROUS_KILL_SEED`` the seed of the schedule (default: a fresh one, printed, and named in every failure message).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tests._reliability import ForkedCli, cli_env, temp_leftovers

from atrous.engine.checkpoint import load_training_checkpoint
from atrous.utils.state_dict import load_state_dict_file

SEED = int(os.environ.get("ATROUS_KILL_SEED") or random.SystemRandom().randrange(2**31))
PROCESS_TIMEOUT_S = 240  # one start, from launch to exit or kill


def recipe(steps: int) -> str:
    return f"""\
model:
  name: unet_padded
  options: {{base_chs: 8}}
data:
  dataset: synthetic
  options: {{size: 32, num_classes: 3}}
  train_options: {{num_samples: 8, seed: 0}}
  val_options: {{num_samples: 2, seed: 1}}
  crop_size: [32, 32]
  batch_size: 2
  val_batch_size: 2
  workers: 0
train:
  steps: {steps}
  lr: 0.01
  eval_every: {steps // 2}
  log_every: 3  # the first log comes after the first save: a kill inside that save leaves no run behind
  checkpoint_every: 1
  amp: false
  deterministic: true
  seed: 0
  progress: false
"""


@dataclass
class Kill:
    mode: str  # save, step or startup
    resumed: bool  # this start was --resume
    after_s: float  # seconds from launch to the kill
    step: int | None  # last.pt's step after the kill (None: no last.pt)
    in_save: bool  # the killed process left its .last.pt temporary file


class Launcher:
    """Starts ``atrous train`` processes, forked from one that imported atrous once
    (:class:`tests._reliability.ForkedCli`): a dozen starts cost seconds, not a minute."""

    def __init__(self, config: Path, env: dict[str, str], logs: Path) -> None:
        self.config, self.env, self.logs = config, env, logs
        self.count = 0
        self.cli = ForkedCli()

    def start(self, run_dir: Path, resume: bool) -> Started:
        self.count += 1
        argv = ["train", "-c", str(self.config), "--run-dir", str(run_dir), *(["--resume"] if resume else [])]
        log = self.logs / f"{run_dir.name}-{self.count:02d}.log"
        return Started(self.cli.start(argv, cwd=self.logs, env=self.env, out=log))

    def log_of(self, run_dir: Path) -> str:
        return (self.logs / f"{run_dir.name}-{self.count:02d}.log").read_text()[-3000:]


class Started:
    """A started process, read as a ``subprocess.Popen``: ``pid``, ``poll()``, ``wait()``
    (the exit code, or minus the signal that killed it)."""

    def __init__(self, process) -> None:
        self.process = process
        self.pid = process.pid

    def poll(self) -> int | None:
        return None if self.process.is_alive() else self.process.exitcode

    def wait(self, timeout: float) -> int:
        self.process.join(timeout)
        if self.process.is_alive():
            raise TimeoutError(f"process {self.pid} still runs after {timeout} s")
        return self.process.exitcode


def _saves_of(run_dir: Path, pid: int) -> set[str]:
    prefix = f".last.pt.atrous-{pid}-"
    try:
        with os.scandir(run_dir) as entries:
            return {e.name for e in entries if e.name.startswith(prefix) and e.name.endswith(".tmp")}
    except FileNotFoundError:
        return set()


def _wait_for_saves(proc: Started, run_dir: Path, count: int, deadline: float) -> bool:
    """Poll until ``count`` checkpoint saves of ``proc`` have begun (True), or it exits (False)."""
    seen: set[str] = set()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        seen |= _saves_of(run_dir, proc.pid)
        if len(seen) >= count:
            return True
        time.sleep(0.0005)
    raise TimeoutError(f"no checkpoint save began within {PROCESS_TIMEOUT_S} s")


def _wait_for_rename(proc: Started, run_dir: Path, deadline: float) -> bool:
    """Poll until the save under way is renamed into place (True), or the process exits (False)."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if not _saves_of(run_dir, proc.pid):
            return True
        time.sleep(0.0005)
    raise TimeoutError(f"a checkpoint save did not finish within {PROCESS_TIMEOUT_S} s")


def _mode(index: int, last_step: int, eval_step: int, rng: random.Random) -> str:
    """The first kill lands inside the first save (no last.pt yet: a fresh start follows);
    the third inside the evaluation halfway through (a resume must evaluate that step
    again); the others at random."""
    if index == 0:
        return "save"
    if index == 2 and last_step < eval_step - 1:
        return "eval"
    return rng.choice(["save", "save", "step", "startup"])


def _log_records(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock times (which no two runs share)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if k != "time_s"} for r in records]


def _final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    checkpoint = load_training_checkpoint(run_dir / "last.pt")
    state = {f"model.{k}": v for k, v in checkpoint["model"].items()}
    for index, values in checkpoint["optimizer"]["state"].items():
        state.update({f"optimizer.{index}.{k}": v for k, v in values.items() if isinstance(v, torch.Tensor)})
    state.update({f"best.{k}": v for k, v in load_state_dict_file(run_dir / "best" / "model.safetensors").items()})
    state["step"] = torch.tensor(checkpoint["step"])
    return state


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_ends_bit_identical(tmp_path, request):
    wanted = request.config.getoption("--kills") or int(os.environ.get("ATROUS_KILLS", "10"))
    rng = random.Random(SEED)
    # Long enough that every kill lands before the end: a kill "between saves" lets up to
    # 0.15 s of steps run (up to 9 here), and 36 steps were once finished after 7 kills in CI.
    steps = max(96, 9 * wanted + 6)
    print(f"\nkill/resume: ATROUS_KILL_SEED={SEED} ATROUS_KILLS={wanted} steps={steps}")
    tag = f"[ATROUS_KILL_SEED={SEED} ATROUS_KILLS={wanted}]"
    config = tmp_path / "recipe.yaml"
    config.write_text(recipe(steps))
    (tmp_path / "logs").mkdir()
    # One thread each: the reference and the killed run share the machine, and a thread
    # count that differs between them could change float sums.
    env = cli_env(tmp_path / "cache", OMP_NUM_THREADS="1")
    launcher = Launcher(config, env, tmp_path / "logs")
    start = time.monotonic()

    reference_dir = tmp_path / "reference"
    reference = launcher.start(reference_dir, resume=False)  # runs beside the kills

    run_dir = tmp_path / "killed"
    eval_step = steps // 2
    kills: list[Kill] = []
    startup_s = 5.0  # launch to first save; measured by the first kill
    last_step = -1
    finished = False
    while len(kills) < wanted:
        resumed = (run_dir / "last.pt").is_file()
        if not resumed and (run_dir / "metrics.jsonl").exists():
            # Killed after logging but before the first checkpoint: there is nothing to
            # resume, and a new run is refused in a folder that holds one. As the refusal
            # says: delete the folder.
            shutil.rmtree(run_dir)
        mode = _mode(len(kills), last_step, eval_step, rng)
        proc = launcher.start(run_dir, resume=resumed)
        launched = time.monotonic()
        deadline = launched + PROCESS_TIMEOUT_S
        if mode == "save":  # inside the first, second or third save of this process
            alive = _wait_for_saves(proc, run_dir, 1 if not kills else rng.randint(1, 3), deadline)
        elif mode == "eval":  # right after the checkpoint of an evaluation step, during the evaluation
            alive = _wait_for_saves(proc, run_dir, eval_step - max(last_step, 0), deadline)
            alive = alive and _wait_for_rename(proc, run_dir, deadline)
        elif mode == "step":  # somewhere in the steps after the first save
            alive = _wait_for_saves(proc, run_dir, 1, deadline)
            time.sleep(rng.uniform(0.0, 0.15))
        else:  # startup: importing, building, or the first steps
            time.sleep(rng.uniform(0.0, startup_s))
            alive = True
        if alive and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        code = proc.wait(timeout=60)
        if code == 0:  # it finished before the kill landed
            finished = True
            break
        assert code == -signal.SIGKILL, f"{tag} start {launcher.count} exited {code}\n{launcher.log_of(run_dir)}"
        after = time.monotonic() - launched
        if not kills:
            startup_s = after
        in_save = bool(_saves_of(run_dir, proc.pid))
        step = None
        if (run_dir / "last.pt").is_file():
            # Whatever moment the kill chose, the last.pt that is there is whole.
            step = int(load_training_checkpoint(run_dir / "last.pt")["step"])
            assert step >= last_step, f"{tag} last.pt went back from step {last_step} to {step}"
            last_step = step
        else:
            assert last_step < 0, f"{tag} last.pt (step {last_step}) disappeared after a kill"
        kills.append(Kill(mode, resumed, round(after, 2), step, in_save))
        print(
            f"  kill {len(kills):2d}: {mode:7s} {'resumed' if resumed else 'fresh':7s} after {after:5.2f} s, "
            f"last.pt step {step}, {'inside a save' if in_save else ''}"
        )

    if not finished:
        proc = launcher.start(run_dir, resume=(run_dir / "last.pt").is_file())
        code = proc.wait(timeout=PROCESS_TIMEOUT_S)
        assert code == 0, f"{tag} the final resume exited {code}\n{launcher.log_of(run_dir)}"
    assert reference.wait(timeout=PROCESS_TIMEOUT_S) == 0, f"{tag} the reference run failed"
    print(f"  {len(kills)} kills, {launcher.count} processes, {time.monotonic() - start:.1f} s")

    assert len(kills) >= min(wanted, 10), f"{tag} the run finished after {len(kills)} kills; make it longer"
    first = next((i for i, k in enumerate(kills) if k.step is None), None)
    assert first is not None, f"{tag} no kill landed before the first last.pt: {kills}"
    assert first + 1 == len(kills) or not kills[first + 1].resumed, f"{tag} no fresh start after {kills[first]}"
    assert any(k.in_save for k in kills), f"{tag} no kill landed inside a checkpoint save: {kills}"
    expected, actual = _final_state(reference_dir), _final_state(run_dir)
    assert expected.keys() == actual.keys(), tag
    different = [key for key in expected if not torch.equal(expected[key], actual[key])]
    assert not different, f"{tag} resumed ≠ uninterrupted in {len(different)} tensors: {different[:8]}; {kills}"
    assert int(actual["step"]) == steps
    # The log reads as one run that never stopped: every step and evaluation once, in order.
    expected_log, actual_log = _log_records(reference_dir), _log_records(run_dir)
    assert [(r["kind"], r["step"]) for r in actual_log] == [(r["kind"], r["step"]) for r in expected_log], (
        f"{tag} metrics.jsonl of the killed run differs: {[(r['kind'], r['step']) for r in actual_log]}; {kills}"
    )
    assert actual_log == expected_log, f"{tag} metrics.jsonl values differ; {kills}"
    leftovers = temp_leftovers(run_dir)
    assert not leftovers, f"{tag} temporary files remain in the run folder after the final resume: {leftovers}"
