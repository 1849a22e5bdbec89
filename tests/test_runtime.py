"""atrous.runtime: precision chosen by measurement (a fake clock decides here), cached per machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from atrous import runtime
from atrous.runtime import PrecisionChoice, choose_precision

CPU = torch.device("cpu")
PROBE = [1, 3, 8, 8]


class FakeClock:
    """A clock that only moves when a candidate 'runs' for its scripted duration."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: dict[str, int] = {}

    def __call__(self) -> float:
        return self.now

    def candidate(self, name: str, seconds: float, output: torch.Tensor):
        def run() -> torch.Tensor:
            self.calls[name] = self.calls.get(name, 0) + 1
            self.now += seconds
            return output

        return run


def logits(labels: torch.Tensor, classes: int = 3) -> torch.Tensor:
    """(1, classes, H, W) logits whose argmax is ``labels``."""
    return torch.nn.functional.one_hot(labels, classes).permute(2, 0, 1)[None].float()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATROUS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / runtime.CACHE_FILE


REFERENCE = torch.zeros(8, 8, dtype=torch.long)


def choose(clock: FakeClock, seconds: dict[str, float], outputs: dict[str, torch.Tensor] | None = None, **kwargs):
    outputs = outputs or {}

    def build(names):
        assert names == ["fp32", "bf16"]
        return {n: clock.candidate(n, seconds[n], outputs.get(n, logits(REFERENCE))) for n in names}

    return choose_precision(
        kwargs.pop("kind", "infer"),
        CPU,
        kwargs.pop("signature", {"model": "m"}),
        PROBE,
        build,
        reference=kwargs.pop("reference", lambda: logits(REFERENCE)),
        timer=clock,
        screen=kwargs.pop("screen", None),
        **kwargs,
    )


def test_the_faster_path_is_chosen_and_its_figures_recorded(cache):
    choice = choose(FakeClock(), {"fp32": 0.2, "bf16": 0.1})
    assert choice.precision == "bf16" and choice.dtype is torch.bfloat16
    assert choice.source == "measured"
    assert choice.timings == pytest.approx({"fp32": 0.2, "bf16": 0.1})
    assert choice.agreement == {"fp32": 1.0, "bf16": 1.0}
    assert "bf16 100 ms" in choice.summary() and "fp32 200 ms" in choice.summary()


@pytest.mark.parametrize("bf16_seconds", [0.3, 0.19])  # slower; faster, but within the 1.10 margin
def test_auto_never_picks_a_path_that_is_not_measurably_faster(cache, bf16_seconds):
    choice = choose(FakeClock(), {"fp32": 0.2, "bf16": bf16_seconds})
    assert choice.precision == "fp32" and choice.dtype is None


def test_a_candidate_far_slower_after_one_round_is_not_timed_again(cache):
    clock = FakeClock()
    choice = choose(clock, {"fp32": 0.1, "bf16": 0.2})
    assert choice.precision == "fp32"
    assert clock.calls == {"fp32": 1 + runtime.ROUNDS, "bf16": 2}  # warm-up + one timed round
    assert "slower than fp32" in choice.rejected["bf16"]


def test_a_candidate_far_slower_in_its_warm_up_is_not_timed(cache):
    clock = FakeClock()
    choice = choose(clock, {"fp32": 0.1, "bf16": 0.4})
    assert clock.calls == {"fp32": 1 + runtime.ROUNDS, "bf16": 1}
    assert "warm-up" in choice.rejected["bf16"]


def test_an_emulated_precision_is_screened_out_before_the_model_runs(cache):
    built = []

    def build(names):
        built.extend(names)
        return {n: FakeClock().candidate(n, 0.1, logits(REFERENCE)) for n in names}

    choice = choose_precision("train", CPU, {"m": 1}, PROBE, build, screen=lambda name, device: 6.0)
    assert built == ["fp32"] and choice.precision == "fp32"
    assert "6.0× slower" in choice.rejected["bf16"]


def test_the_convolution_screen_is_a_real_ratio():
    assert 0 < runtime.conv_slowdown("fp32", CPU) < 100  # the same op twice: about 1 (loose: shared machines)


def test_a_faster_path_that_changes_labels_is_rejected(cache):
    changed = REFERENCE.clone()
    changed[0, :2] = 1  # 2 of 64 pixels: 96.9 % agreement
    choice = choose(FakeClock(), {"fp32": 0.2, "bf16": 0.1}, {"bf16": logits(changed)})
    assert choice.precision == "fp32"
    assert choice.agreement["bf16"] == pytest.approx(62 / 64)
    assert "agree" in choice.rejected["bf16"]


def test_agreement_ignores_pixels_where_fp32_is_at_a_tie():
    reference = torch.tensor([[1.0, 0.0], [0.5, 0.499], [0.0, 1.0]]).T.reshape(1, 2, 1, 3)  # middle pixel: a tie
    flipped_tie = torch.tensor([[1.0, 0.0], [0.499, 0.5], [0.0, 1.0]]).T.reshape(1, 2, 1, 3)
    flipped_decided = torch.tensor([[0.0, 1.0], [0.5, 0.499], [0.0, 1.0]]).T.reshape(1, 2, 1, 3)
    assert runtime.label_agreement(reference, flipped_tie) == 1.0
    assert runtime.label_agreement(reference, flipped_decided) == pytest.approx(0.5)
    assert runtime.label_agreement(torch.zeros(1, 2, 1, 3), torch.ones(1, 2, 1, 3)) == 1.0  # nothing decided


def test_a_faster_path_with_non_finite_output_is_rejected(cache):
    broken = logits(REFERENCE)
    broken[0, 0, 0, 0] = float("nan")
    choice = choose(FakeClock(), {"fp32": 0.2, "bf16": 0.1}, {"bf16": broken}, reference=None, kind="train")
    assert choice.precision == "fp32" and choice.rejected["bf16"] == "non-finite output"


def test_the_decision_is_read_back_from_the_cache_without_measuring(cache):
    first = choose(FakeClock(), {"fp32": 0.2, "bf16": 0.1})
    assert cache.is_file()

    def must_not_measure(names):
        raise AssertionError("a cached decision must not be measured again")

    again = choose_precision("infer", CPU, {"model": "m"}, PROBE, must_not_measure)
    assert again.precision == first.precision == "bf16"
    assert again.source == "cache" and again.timings == first.timings


def test_the_cache_key_separates_models_tasks_and_shapes(cache):
    choose(FakeClock(), {"fp32": 0.2, "bf16": 0.1})
    for kwargs in ({"signature": {"model": "other"}}, {"kind": "train"}):
        assert choose(FakeClock(), {"fp32": 0.1, "bf16": 0.2}, **kwargs).source == "measured"
    entries = json.loads(cache.read_text())
    assert len(entries) == 3


def test_a_cache_entry_of_another_torch_version_is_ignored(cache, monkeypatch):
    monkeypatch.setattr(torch, "__version__", "1.0.0-old")
    choose(FakeClock(), {"fp32": 0.2, "bf16": 0.1})  # written under the old version
    monkeypatch.undo()
    os.environ["ATROUS_CACHE"] = str(cache.parent)
    # An entry stored under today's key but recorded by another torch is stale too.
    key = runtime.cache_key("infer", CPU, {"model": "m"}, PROBE)
    entries = json.loads(cache.read_text())
    entries[runtime._digest(key)] = {
        "key": {**key, "torch": "1.0.0-old"},
        "choice": {"precision": "bf16", "source": "measured"},
    }
    cache.write_text(json.dumps(entries))
    choice = choose(FakeClock(), {"fp32": 0.1, "bf16": 0.2})
    assert choice.source == "measured" and choice.precision == "fp32"


def test_a_corrupt_or_unwritable_cache_only_costs_a_measurement(cache, tmp_path, monkeypatch, caplog):
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    assert choose(FakeClock(), {"fp32": 0.2, "bf16": 0.1}).source == "measured"
    assert "ignoring the precision cache" in caplog.text
    assert json.loads(cache.read_text())  # rewritten whole
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    monkeypatch.setenv("ATROUS_CACHE", str(blocked / "cache"))  # a folder under a file: cannot exist
    assert choose(FakeClock(), {"fp32": 0.2, "bf16": 0.1}).precision == "bf16"
    assert "could not write the precision cache" in caplog.text


def test_the_default_cache_folder_is_the_platforms(monkeypatch):
    import platformdirs

    monkeypatch.delenv("ATROUS_CACHE")
    assert runtime.cache_dir() == runtime.Path(platformdirs.user_cache_dir("atrous", appauthor=False))


def test_a_choice_round_trips_and_explains_itself():
    choice = PrecisionChoice("fp32", "requested")
    assert choice.summary() == "fp32 (requested)"
    with pytest.raises(ValueError, match="precision must be one of"):
        runtime.precision_dtype("int4")


def test_machine_fingerprint_names_the_oneDNN_cap(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    capped = runtime.machine_fingerprint(CPU)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert capped["onednn_isa"] == "AVX2" and runtime.machine_fingerprint(CPU)["onednn_isa"] == ""
    assert capped["cpu"] and capped["threads"] == torch.get_num_threads()


def test_model_signature_follows_weights_only_when_asked():
    a, b = torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(3, 4, 3)
    assert runtime.model_signature(a, weights=False) == runtime.model_signature(b, weights=False)
    assert runtime.model_signature(a, weights=True) != runtime.model_signature(b, weights=True)


def test_without_native_bf16_auto_does_not_pick_bf16(tmp_path):
    """Under oneDNN's AVX2 cap bf16 convolutions are emulated (several times slower than
    fp32 on every CPU class): the measured decision must be fp32, for inference and training."""
    script = textwrap.dedent(
        """
        import torch, atrous
        from atrous.inference import inference_path
        from atrous.engine.amp import choose_training_precision, semantic_probe
        torch.set_num_threads(2)
        model = atrous.create_model("deeplabv3_resnet18", num_classes=3).eval()
        path = inference_path(model, "cpu", "auto")
        shape = [2, 3, 128, 128]
        train = choose_training_precision(
            "auto", torch.device("cpu"), model, semantic_probe(shape, 3, torch.device("cpu"), channels_last=True), shape
        )
        print(path.precision, train.precision)
        print(path.choice.summary())
        print(train.summary())
        """
    )
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATROUS_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    infer, train = done.stdout.split("\n")[0].split()
    assert (infer, train) == ("fp32", "fp32"), done.stdout
    assert "bf16" in done.stdout.split("\n")[1]  # it was measured, not skipped


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("garbage", "device 'garbage' is not a device: use auto, cpu, cuda"),
        ("mps", "device 'mps' requested but MPS is not available"),
        ("xpu:1", "device 'xpu:1' requested but XPU is not available"),
    ],
)
def test_a_device_that_is_not_here_is_one_value_error(name, message):
    from atrous.runtime import resolve_device

    if name == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    if name.startswith("xpu") and hasattr(torch, "xpu") and torch.xpu.is_available():
        pytest.skip("this machine has an XPU")
    with pytest.raises(ValueError, match=message):
        resolve_device(name)


def test_bench_with_a_device_that_is_not_here_exits_2(capsys):
    from atrous.cli import main

    assert main(["bench", "fcn_resnet50", "--device", "garbage"]) == 2
    assert "device 'garbage' is not a device" in capsys.readouterr().err
