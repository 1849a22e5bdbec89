"""Two CPU processes with the gloo backend, as torchrun would start them."""

import json
import socket
import time

import pytest
import torch
import torch.multiprocessing as mp
from tests.engine._ddp_worker import train_rank
from torch.utils.data import DataLoader

from atrous.data import build_dataset
from atrous.data.transforms import eval_transforms
from atrous.engine.evaluator import evaluate

OVERRIDES = [
    "model.name=deeplabv3_resnet18",
    "data.dataset=synthetic",
    "data.options={size: 32, num_classes: 3}",
    "data.train_options={num_samples: 16, seed: 0}",
    "data.val_options={num_samples: 5, seed: 1}",  # odd: the ranks see 3 and 2 images
    "data.crop_size=[32, 32]",
    "data.batch_size=2",
    "data.workers=0",
    "train.steps=3",
    "train.eval_every=3",
    "train.progress=false",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("extra", [[], ["train.ema=0.5"]], ids=["weights", "weight-average"])
def test_ddp_keeps_ranks_identical_and_reduces_metrics(tmp_path, extra):
    mp.spawn(train_rank, args=(2, _free_port(), str(tmp_path), [*OVERRIDES, *extra]), nprocs=2, join=True)
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in w0:  # parameters (DDP) and BatchNorm statistics (broadcast before evaluation)
        assert torch.equal(w0[key], w1[key]), key
    m0 = json.loads((tmp_path / "rank0.json").read_text())
    m1 = json.loads((tmp_path / "rank1.json").read_text())
    assert m0 == m1

    # The reduced matrix equals one process evaluating all five images.
    import atrous

    model = atrous.create_model("deeplabv3_resnet18", num_classes=3)
    model.load_state_dict(w0)
    val = build_dataset(
        "synthetic", split="val", transforms=eval_transforms(), size=32, num_classes=3, num_samples=5, seed=1
    )
    single = evaluate(model, DataLoader(val, batch_size=1), 3, device=torch.device("cpu")).compute()
    assert m0["miou"] == (single.as_dict()["miou"])
    assert m0["pixel_accuracy"] == single.as_dict()["pixel_accuracy"]


def test_ddp_fits_one_schedule_by_rank_zeros_clock(tmp_path):
    # Simulated clocks: rank 0 takes 1 s a step, rank 1 0.5 s. At step 60 rank 0 has measured
    # 1 step/s with 60 of the 80 s spent and 16 usable left: 76 steps. Rank 1 alone would fit
    # 60 + 46 s x 2 steps/s = 152; ranks that disagreed would train different schedules and
    # then wait for each other in different collectives, so the join below has a deadline.
    fit = ["train.steps=400", "train.max_time_s=80", "train.fit_to_budget=true", "train.eval_every=1000",
           "train.checkpoint_every=1000", "train.log_every=1000"]  # fmt: skip
    context = mp.spawn(
        train_rank, args=(2, _free_port(), str(tmp_path), [*OVERRIDES, *fit], [1.0, 0.5]), nprocs=2, join=False
    )
    deadline = time.monotonic() + 300
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two ranks did not finish within 300 s: they disagree about the schedule")
    fits = [json.loads((tmp_path / f"rank{r}_fit.json").read_text()) for r in (0, 1)]
    assert fits[0] == fits[1]
    assert fits[0]["steps"] == 76 and fits[0]["steps_per_s"] == 1.0 and fits[0]["planned_steps"] == 400
    assert json.loads((tmp_path / "run" / "schedule.json").read_text())["steps"] == 76
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(w0[key], w1[key]) for key in w0)
    assert json.loads((tmp_path / "rank0.json").read_text())["step"] == 76


def test_instance_training_under_ddp_logs_each_loss_and_keeps_ranks_identical(tmp_path):
    from tests.instances.conftest import make_nuclei_folder

    root = make_nuclei_folder(tmp_path / "nuclei", count=4)
    overrides = [
        "model.name=maskrcnn_resnet18_fpn",
        "model.options={min_size: 64, max_size: 64, anchor_sizes: [8, 16, 32, 64, 128], box_score_thresh: 0.0}",
        "data.dataset=dsb2018_nuclei",
        f"data.root={root}",
        "data.batch_size=1",
        "data.val_batch_size=2",
        "data.workers=0",
        "data.scale_range=[1.0, 1.0]",
        "train.grad_accum=2",  # no_sync on the first micro-batch, all-reduce on the second
        "train.steps=2",
        "train.eval_every=2",
        "train.log_every=1",
        "train.tensorboard=true",
        "train.amp=off",  # the precision probe is not what this test is about
        "train.progress=false",
        "train.lr=0.001",
        "train.warmup_steps=1",
    ]
    mp.spawn(train_rank, args=(2, _free_port(), str(tmp_path), overrides), nprocs=2, join=True)
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in w0:
        assert torch.equal(w0[key], w1[key]), key
    m0 = json.loads((tmp_path / "rank0.json").read_text())
    assert m0 == json.loads((tmp_path / "rank1.json").read_text())  # rank 0's AP, on every rank
    assert "mask_AP" in m0

    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2]  # one writer: rank 0
    parts = {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    for record in train:
        assert parts <= set(record)
        assert record["loss"] == pytest.approx(sum(record[p] for p in parts), rel=1e-5)
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "run" / "plots" / "mask_AP.png").is_file()
