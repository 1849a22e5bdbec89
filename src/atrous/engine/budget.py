"""``train.fit_to_budget``: shorten a run's schedule to what its time budget holds on this machine.

A recipe fixes ``train.steps`` and sizes ``train.max_time_s`` for the machine it was measured
on. On a slower CPU the budget stops the run while the poly schedule's learning rate is
still high, so the run ends without the annealed steps its recipe was measured with (on the
humanseg recipe that cost at most a point of person IoU, inside the intervals:
docs/benchmarks.md). Fitting measures how fast this machine
trains — the steps of this run itself, :data:`FIT_WINDOW` of them after :data:`FIT_SKIP`
steps of warm-up (data workers starting, oneDNN building its kernels) — once, and sets the
schedule's length to the steps that fit in what is left of the budget, keeping
:data:`EVAL_RESERVE` of the budget for evaluations and checkpoints. It only ever shortens:
on a machine fast enough for the recipe the run is the recipe as written.

The decision is recorded (``schedule.json`` in the run folder, the checkpoint, the model
card), and a resumed run keeps the fitted length: after the fit the run is as deterministic
as a run configured with that many steps from the start, except for the first
``FIT_SKIP + FIT_WINDOW`` steps, trained on the longer schedule (a learning rate a few per
cent above the fitted schedule's: 1 % at step 60 when 5600 steps are fitted to 2800).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

SCHEDULE_NAME = "schedule.json"  # the fit, in the run folder
FIT_SKIP = 10  # steps after the (re)start before the clock starts
FIT_WINDOW = 50  # steps timed
EVAL_RESERVE = 0.05  # of max_time_s, for evaluations and checkpoints (a few % in the recipes here)


@dataclass(frozen=True)
class ScheduleFit:
    """One fit: the schedule's length before and after, and the figures behind it."""

    planned_steps: int  # train.steps
    steps: int  # the fitted length (== planned_steps when the budget holds the recipe)
    steps_per_s: float  # measured over steps measured_from..measured_to of this invocation
    measured_from: int
    measured_to: int
    elapsed_s: float  # of this invocation's budget when the fit was made
    max_time_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        speed = f"{self.steps_per_s:.2f} steps/s measured over steps {self.measured_from}-{self.measured_to}"
        if self.steps == self.planned_steps:
            return f"train.fit_to_budget: {speed}; the {self.max_time_s:g} s budget holds all {self.steps} steps"
        return (
            f"train.fit_to_budget: {speed}; the schedule now ends at step {self.steps} instead of "
            f"{self.planned_steps}, within the {self.max_time_s:g} s budget"
        )


def fitted_steps(
    planned: int, step: int, elapsed_s: float, steps_per_s: float, max_time_s: float, reserve: float = EVAL_RESERVE
) -> int:
    """The schedule's length: ``step`` plus the steps the rest of the budget holds at
    ``steps_per_s`` (keeping ``reserve`` of it), at least one more, at most ``planned``."""
    remaining = max_time_s * (1.0 - reserve) - elapsed_s
    return min(planned, step + max(1, math.floor(remaining * steps_per_s)))


class BudgetFitter:
    """Times steps ``start + FIT_SKIP`` to ``start + FIT_SKIP + FIT_WINDOW`` of an invocation
    that started at step ``start`` and returns the fit at the last of them."""

    def __init__(self, start_step: int, planned_steps: int, max_time_s: float) -> None:
        self.measure_from = start_step + FIT_SKIP
        self.measure_to = self.measure_from + FIT_WINDOW
        self.planned_steps = planned_steps
        self.max_time_s = max_time_s
        self._clock_at_start: float | None = None

    @staticmethod
    def applies(start_step: int, steps: int) -> bool:
        """Whether a run at ``start_step`` of ``steps`` has room to measure before it ends."""
        return start_step + FIT_SKIP + FIT_WINDOW < steps

    def observe(self, step: int, now: float, elapsed_s: float) -> ScheduleFit | None:
        """Call after every step with the clock and this invocation's elapsed time; the fit
        once ``measure_to`` is reached, else None."""
        if step == self.measure_from:
            self._clock_at_start = now
        if step != self.measure_to or self._clock_at_start is None:
            return None
        rate = FIT_WINDOW / max(now - self._clock_at_start, 1e-9)
        steps = fitted_steps(self.planned_steps, step, elapsed_s, rate, self.max_time_s)
        return ScheduleFit(
            planned_steps=self.planned_steps,
            steps=steps,
            steps_per_s=round(rate, 4),
            measured_from=self.measure_from,
            measured_to=self.measure_to,
            elapsed_s=round(elapsed_s, 2),
            max_time_s=self.max_time_s,
        )
