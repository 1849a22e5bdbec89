"""The training loop for every task: one process, one GPU, or many through torchrun (DDP).

:class:`Trainer` owns what a run does whatever it predicts; a task
(:mod:`atrous.engine.tasks`) supplies its data, model, training step and evaluation.
Everything a run writes goes into its run folder:

    config.yaml        the resolved configuration
    precision.json     what ``train.amp`` resolved to, and the figures behind it
    metrics.jsonl      one JSON object per log step (every loss part) and per evaluation
    last.pt            the latest training checkpoint (``--resume`` continues from it); with
                       ``train.ema`` it holds the weight average too (``model_ema``)
    best/, best.pt     the best model by the task's score (the weight average's, with
                       ``train.ema``; save_pretrained format, with its model card README.md),
                       its step
    plots/             loss and score curves (and, for semantic runs, per-class IoU and the
                       normalised confusion matrix)
    tensorboard/       when ``train.tensorboard`` is on
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..config import Config, validate_config
from ..runtime import PrecisionChoice, resolve_device, seed_everything
from ..utils.atomic import atomic_write_text
from ..utils.state_dict import load_strict
from . import distributed as dist_utils
from .budget import SCHEDULE_NAME, BudgetFitter, ScheduleFit
from .card import card_record
from .checkpoint import (
    BEST,
    CONFIG,
    LAST,
    RUN_CONFIG_HEADER,
    RunLock,
    atomic_torch_save,
    check_resume,
    load_training_checkpoint,
    open_run,
    recorded_best,
    rng_state,
    set_rng_state,
)
from .ema import EMA_KEY, WeightAverage
from .metrics_log import LOG_NAME, rewind_log
from .optim import build_optimizer, build_scheduler
from .plots import write_training_plots
from .tasks.base import Task


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept as it was."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM or SIGINT arrived; a checkpoint was written at the step boundary."""

    def __init__(self, signum: int, checkpoint: Path) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}; resume with --resume from {checkpoint}")
        self.signum = signum
        self.checkpoint = checkpoint


@dataclass
class TrainResult:
    """What a run reached: ``best_score`` is the best value of ``score_name`` (``miou`` for
    semantic runs, ``mask_AP`` for instance runs)."""

    run_dir: Path
    steps: int
    best_score: float
    score_name: str = "miou"
    last_metrics: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best_miou(self) -> float:
        """The best validation mIoU of a semantic run."""
        if self.score_name != "miou":
            raise AttributeError(f"this run is scored by {self.score_name}, not mIoU: read best_score")
        return self.best_score


def _task_for(config: Config, device: torch.device, dist: dist_utils.DistInfo) -> Task:
    """The task of ``config.model``: what the registry records for the model name."""
    from ..models import model_task

    if model_task(config.model.name) == "instance":
        from .tasks.instance import InstanceTask  # pycocotools only for instance runs

        return InstanceTask(config, device, dist)
    from .tasks.semantic import SemanticTask

    return SemanticTask(config, device, dist)


class Trainer:
    """Builds everything from a :class:`Config` and runs the loop.

    The task (semantic or instance segmentation) follows from ``config.model.name``.

    Args:
        config: the resolved configuration.
        run_dir: the run folder (created).
        resume: continue from ``run_dir/last.pt`` (``True``) or from a given checkpoint;
            ``config`` may differ from the checkpoint's only where that does not change what is
            trained (:data:`atrous.config.RESUME_MAY_CHANGE`), else the resume is refused.
        callbacks: ``fn(trainer, step)`` called after every optimiser step.
    """

    def __init__(
        self,
        config: Config,
        run_dir: str | os.PathLike,
        *,
        resume: bool | str | os.PathLike = False,
        callbacks: list[Callable[[Trainer, int], None]] | None = None,
        command: str | None = None,
    ) -> None:
        # Every value checked as load_config checks it: a Config built in Python gets the same rules.
        self.config = validate_config(config)
        self.run_dir = Path(run_dir)
        self.callbacks = callbacks or []
        self.command = command  # for the model card: the command line that started the run
        self._seconds_before = 0.0  # training time before a resume (from the checkpoint)
        self._started: float | None = None
        t = config.train
        self.device = resolve_device(t.device)
        self.dist = dist_utils.init_distributed(self.device)
        # The folder's lock first: a second trainer started on a running run is refused before
        # it reads or rewrites anything there (a resume rewinds metrics.jsonl below).
        self._lock = RunLock(self.run_dir) if self.dist.is_main else None
        try:
            self._start(config, resume)
        except BaseException:
            created = self._lock is not None and self._lock.created
            self._release_lock()
            if created and not any(self.run_dir.iterdir()):  # a refused start leaves no empty folder
                self.run_dir.rmdir()
            raise

    def _start(self, config: Config, resume: bool | str | os.PathLike) -> None:
        t = config.train
        # Refused starts (a used folder, a resume that would train something else) cost nothing.
        resume_path, checkpoint = open_run(
            self.run_dir, config, resume, world_size=self.dist.world_size, is_main=self.dist.is_main
        )
        seed_everything(t.seed + self.dist.rank, t.deterministic)

        self.task = _task_for(config, self.device, self.dist)
        self.task.build_data()
        self.num_classes = self.task.num_classes
        self.class_names = self.task.class_names
        self.metadata = self.task.metadata

        # Resuming, the weights come from the checkpoint: model.checkpoint_path is not read again.
        model = self.task.build_model(load_weights=checkpoint is None).to(self.device)
        if t.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model: nn.Module = model
        self.task.prepare(model)
        self.ema: WeightAverage | None = None  # made below, once every rank holds rank 0's weights
        ema_state: dict[str, torch.Tensor] | None = None
        # Under DDP rank 0 decides for every rank: one precision for one model.
        choice = self.task.choose_precision(model) if self.dist.is_main else None
        self.precision_choice: PrecisionChoice = dist_utils.broadcast_object(choice)
        self.optimizer = build_optimizer(
            model, t.optimizer, lr=t.lr, weight_decay=t.weight_decay, momentum=t.momentum, head_lr_mult=t.head_lr_mult
        )
        self.scheduler = build_scheduler(
            self.optimizer, t.steps, power=t.poly_power, warmup_steps=t.warmup_steps, warmup_ratio=t.warmup_ratio
        )
        self._set_precision(self.precision_choice)
        self.step = 0
        self.schedule_fit: dict[str, Any] | None = None  # what train.fit_to_budget fitted (engine/budget.py)
        self._saved_step = -1
        self.best_score = -math.inf
        self.history: list[dict[str, Any]] = []  # what this process logged
        self._logged_before: list[dict[str, Any]] = []  # what the run logged before a resume

        if checkpoint is not None:
            self._load(resume_path, checkpoint)
            ema_state = checkpoint.get(EMA_KEY)
            del checkpoint
            if self.dist.is_main:  # the steps after the checkpoint are trained (and logged) again
                self._logged_before = rewind_log(self.run_dir, self.step)
            self._logged_before = dist_utils.broadcast_object(self._logged_before)

        if self.dist.enabled:
            if t.sync_bn and self.device.type == "cuda":
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.ddp: nn.Module = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.task.find_unused_parameters,
            )
        else:
            self.ddp = self.model
        if t.ema is not None:
            # After DDP has copied rank 0's weights to every rank (each rank initialised its own),
            # so all ranks average one model. It starts from the weights training starts from.
            self.ema = WeightAverage(self.model, t.ema)
            if ema_state is not None:
                load_strict(self.ema.module, ema_state, source=f"{resume_path} ({EMA_KEY})")
        self.train_loader = self.task.train_loader(start_batch=self.step * t.grad_accum)
        self.val_loader = self.task.val_loader()
        self._stop_signal: int | None = None
        self._log_file = None
        self._tb = None

    @property
    def steps(self) -> int:
        """The schedule's length: ``train.steps``, or what ``train.fit_to_budget`` fitted."""
        return int(self.schedule_fit["steps"]) if self.schedule_fit else self.config.train.steps

    @property
    def score_name(self) -> str:
        return self.task.score_name

    @property
    def train_set(self):
        return self.task.train_set

    @property
    def val_set(self):
        return self.task.val_set

    @property
    def criterion(self) -> nn.Module:
        """The loss of a semantic run (an instance model computes its own losses)."""
        return self.task.criterion

    # -- precision ----------------------------------------------------------------------

    def _set_precision(self, choice: PrecisionChoice) -> None:
        self.precision_choice = choice
        self.autocast_dtype = choice.dtype
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.autocast_dtype is torch.float16)

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # -- checkpoints ---------------------------------------------------------------------

    @property
    def eval_model(self) -> nn.Module:
        """What the run evaluates and saves as ``best/``: the weight average with ``train.ema``."""
        return self.ema.module if self.ema is not None else self.model

    def _state(self) -> dict[str, Any]:
        ema = {EMA_KEY: self.ema.state_dict()} if self.ema is not None else {}
        return {
            "model": self.model.state_dict(),
            **ema,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "best_score": self.best_score,
            "score_name": self.score_name,
            "precision": self.precision_choice.precision,
            "rng": rng_state(),
            "model_config": self.model.config,
            "metadata": self.metadata,
            "config": self.config.to_dict(),
            "world_size": self.dist.world_size,  # the batch a step sees: a resume must keep it
            "schedule_fit": self.schedule_fit,
            "train_seconds": self.train_seconds(),
        }

    def train_seconds(self) -> float:
        """Wall time this run has trained (and evaluated) for, resumed segments included."""
        running = 0.0 if self._started is None else time.perf_counter() - self._started
        return self._seconds_before + running

    def save_checkpoint(self, name: str = LAST) -> Path:
        path = self.run_dir / name
        if self.dist.is_main:
            atomic_torch_save(self._state(), path)
        self._saved_step = self.step
        dist_utils.barrier()
        return path

    def _load(self, path: Path, checkpoint: dict[str, Any] | None = None) -> None:
        if checkpoint is None:
            checkpoint = load_training_checkpoint(path)
            check_resume(self.config, checkpoint, path, world_size=self.dist.world_size)
        load_strict(self.model, checkpoint["model"], source=str(path))
        if self.config.train.ema is not None and EMA_KEY not in checkpoint:
            raise ValueError(
                f"{path} holds no weight average ({EMA_KEY}) to continue train.ema={self.config.train.ema} from"
            )
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        recorded = checkpoint.get("precision")
        if self.config.train.amp in ("auto", True) and recorded and recorded != self.precision_choice.precision:
            # amp=auto resolves once per run: a resumed run keeps the precision it trained in.
            self._set_precision(PrecisionChoice(recorded, "checkpoint"))
        if checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.step = int(checkpoint["step"])
        # A fitted schedule is kept (the scheduler's state above carries its length too).
        self.schedule_fit = checkpoint.get("schedule_fit")
        self._seconds_before = float(checkpoint.get("train_seconds", 0.0))
        if path.resolve() == (self.run_dir / LAST).resolve():
            self._saved_step = self.step  # last.pt holds this step: no need to write it again
        # Checkpoints written before the loop was shared name their best score by task.
        best = checkpoint.get("best_score", checkpoint.get("best_miou", checkpoint.get("best_map", -math.inf)))
        # The checkpoint at a step is written before that step's evaluation: best.pt knows a better one.
        self.best_score = max(float(best), recorded_best(path, self.step, self.score_name))
        if not (self.run_dir / "best" / "config.json").is_file():
            # The checkpoint came from elsewhere (copied, or --resume PATH): the best model it
            # scored is not in this folder, so the next evaluation writes one here.
            self.best_score = -math.inf
        if "rng" in checkpoint:
            set_rng_state(checkpoint["rng"])
            if self.dist.enabled:  # each rank keeps its own stream, as in a run that never stopped
                torch.manual_seed(self.config.train.seed + self.dist.rank + self.step)

    # -- logging -------------------------------------------------------------------------

    def _record_precision(self) -> None:
        """``precision.json``: what ``train.amp`` resolved to and the figures behind it."""
        choice = self.precision_choice
        record = {"amp": self.config.train.amp, "device": str(self.device), **asdict(choice)}
        atomic_write_text(self.run_dir / "precision.json", json.dumps(record, indent=2) + "\n")
        if self.config.train.progress:
            tqdm.write(f"train.amp={self.config.train.amp}: {choice.summary()}")

    def _apply_fit(self, fit: ScheduleFit, progress: tqdm) -> None:
        """Set the schedule's length to the fitted one and record the decision (``schedule.json``)."""
        for schedule in self.scheduler.lr_lambdas:
            schedule.steps = fit.steps  # the poly schedule reads its length at every step
        self.schedule_fit = fit.to_dict()
        progress.total = self.steps
        progress.refresh()
        if self.dist.is_main:
            record = {"fit_to_budget": True, **self.schedule_fit}
            atomic_write_text(self.run_dir / SCHEDULE_NAME, json.dumps(record, indent=2) + "\n")
            if self.config.train.progress:
                tqdm.write(fit.summary())

    def _open_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ValueError("train.tensorboard=true needs the tensorboard package installed") from exc
        self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))

    def _log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if not self.dist.is_main:
            return
        if self._log_file is None:
            self._log_file = open(self.run_dir / LOG_NAME, "a")  # noqa: SIM115 - closed in run()
        self._log_file.write(json.dumps(record) + "\n")
        self._log_file.flush()
        if self._tb is not None:
            for key, value in record.items():
                if isinstance(value, int | float) and key != "step":
                    self._tb.add_scalar(f"{record.get('kind', 'train')}/{key}", value, record["step"])

    # -- the loop ------------------------------------------------------------------------

    def _handle_signal(self, signum, frame) -> None:
        self._stop_signal = signum

    def _micro_step(self, batch: Any, sync: bool) -> dict[str, torch.Tensor]:
        """Forward and backward of one micro-batch; gradients are all-reduced (DDP) only on
        the last micro-batch of a step."""
        no_sync = self.ddp.no_sync() if (self.dist.enabled and not sync) else nullcontext()  # type: ignore[operator]
        with no_sync:
            with self._autocast():
                losses = self.task.training_step(self.ddp, batch)
            self.scaler.scale(losses["loss"] / self.config.train.grad_accum).backward()
        return {name: value.detach().float() for name, value in losses.items()}

    def _optimizer_step(self, losses: dict[str, torch.Tensor]) -> None:
        t = self.config.train
        if not torch.isfinite(losses["loss"]):
            parts = ", ".join(f"{k} {v.item():.4g}" for k, v in losses.items() if k != "loss")
            raise NonFiniteLossError(
                f"loss is {losses['loss'].item()} at step {self.step + 1}{f' ({parts})' if parts else ''}; "
                f"stopping. The last good checkpoint ({self.run_dir / LAST}) was not overwritten. "
                "Try a lower train.lr or train.amp=off."
            )
        if t.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    def run(self) -> TrainResult:
        """Train to ``train.steps`` (or the time budget), holding the run folder's lock (taken
        when the trainer was made, released when this returns or raises)."""
        if self.dist.is_main and self._lock is None:  # run again after it ended
            self._lock = RunLock(self.run_dir)
        try:
            return self._run()
        finally:
            self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __del__(self) -> None:  # a trainer made and never run must not keep its folder locked
        if hasattr(self, "_lock"):  # not when __init__ failed before taking it
            self._release_lock()

    def _run(self) -> TrainResult:
        t = self.config.train
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            self.config.save(self.run_dir / CONFIG, header=RUN_CONFIG_HEADER)
            self._record_precision()
            if t.tensorboard:
                self._open_tensorboard()
        previous = {s: signal.signal(s, self._handle_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        start_time = self._started = time.perf_counter()
        data_iter = iter(self.train_loader)
        progress = tqdm(
            total=self.steps,
            initial=self.step,
            desc="train",
            disable=not (t.progress and self.dist.is_main),
            dynamic_ncols=True,
        )
        self.ddp.train()
        try:
            if 0 < self.step < self.steps and self.step % t.eval_every == 0 and not self._evaluated(self.step):
                # Resumed from a checkpoint whose step's evaluation never finished (killed
                # during it): the step is evaluated now, as in a run that never stopped.
                self.evaluate_and_track()
            fitter = None
            if t.fit_to_budget and self.schedule_fit is None and BudgetFitter.applies(self.step, self.steps):
                fitter = BudgetFitter(self.step, self.steps, t.max_time_s)
            while self.step < self.steps:
                # One decision for all ranks (max over them): 2 = a signal arrived somewhere,
                # save and stop; 1 = the time budget is spent, finish normally; 0 = go on.
                timed_out = t.max_time_s is not None and time.perf_counter() - start_time > t.max_time_s
                action = 2.0 if self._stop_signal is not None else float(timed_out)
                action = dist_utils.all_reduce_max(action, self.device)
                if action == 2.0:
                    path = self.save_checkpoint(LAST)
                    raise TrainingInterrupted(self._stop_signal or signal.SIGTERM, path)
                if action == 1.0:
                    break
                micro = [self._micro_step(next(data_iter), sync=i == t.grad_accum - 1) for i in range(t.grad_accum)]
                losses = {name: torch.stack([m[name] for m in micro]).mean() for name in micro[0]}
                self._optimizer_step(losses)
                self.step += 1
                if self.ema is not None:
                    self.ema.update(self.model, self.step)
                progress.update(1)
                if fitter is not None:
                    now = time.perf_counter()
                    fit = fitter.observe(self.step, now, now - start_time)
                    if self.step == fitter.measure_to:
                        # Rank 0's clock decides for every rank: one schedule for one model.
                        self._apply_fit(dist_utils.broadcast_object(fit if self.dist.is_main else None), progress)
                        fitter = None
                if self.step % t.log_every == 0 or self.step == self.steps:
                    values = {name: dist_utils.all_reduce_mean(value).item() for name, value in losses.items()}
                    lr = self.optimizer.param_groups[0]["lr"]
                    progress.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{lr:.2e}")
                    elapsed = round(time.perf_counter() - start_time, 2)
                    self._log({"kind": "train", "step": self.step, **values, "lr": lr, "time_s": elapsed})
                # Checkpoint first: an evaluation that fails (out of memory on a large validation
                # image) then costs no training, and a resume evaluates that step again.
                if self.step % t.checkpoint_every == 0 or self.step == self.steps:
                    self.save_checkpoint(LAST)
                if self.step % t.eval_every == 0 or self.step == self.steps:
                    self.evaluate_and_track()
                for callback in self.callbacks:
                    callback(self, self.step)
            # Stopped by the time budget between evaluations (or resumed where the last
            # evaluation did not finish): save and evaluate where it ended.
            if self._saved_step != self.step:
                self.save_checkpoint(LAST)
            if not self._evaluated(self.step):
                self.evaluate_and_track()
        finally:
            progress.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            if self._tb is not None:
                self._tb.close()
        if self.dist.is_main:
            write_training_plots(self.run_dir, self.class_names, score=self.score_name, label=self.task.score_label)
        last_val = next((r for r in reversed(self.history) if r["kind"] == "val"), None)
        return TrainResult(self.run_dir, self.step, self.best_score, self.score_name, last_val, self.history)

    def _evaluated(self, step: int) -> bool:
        """Whether the log holds the evaluation of ``step`` (a resumed run reads it back)."""
        return any(r.get("kind") == "val" and r.get("step") == step for r in (*self._logged_before, *self.history))

    def evaluate_and_track(self) -> dict[str, Any]:
        """Evaluate on the validation split, log, and keep the best model by the task's score."""
        model = self.eval_model
        dist_utils.broadcast_buffers(model)  # every rank evaluates (and rank 0 saves) one model
        metrics = self.task.evaluate(model, self.autocast_dtype)
        record = {"kind": "val", "step": self.step, **metrics}
        self._log(record)
        if self.dist.is_main:
            self.task.write_artefacts(self.run_dir)
        value = metrics[self.score_name]
        score = value if value is not None and not math.isnan(value) else -math.inf
        if score > self.best_score:
            self.best_score = score
            if self.dist.is_main:
                card = card_record(self, metrics, self.train_seconds())
                model.save_pretrained(self.run_dir / "best", metadata={**self.metadata, "card": card})
                atomic_torch_save({"step": self.step, self.score_name: score}, self.run_dir / BEST)
        dist_utils.barrier()
        return record
