"""The model card (README.md) save_pretrained writes beside the weights: the rendering, what
a hand-saved model says it does not know, and a user's own README.md never replaced. What
a run records in it: tests/cli/test_cli.py (the card of a trained run) and
tests/engine/test_trainer.py (training time across a resume)."""

from __future__ import annotations

import warnings

import pytest

import atrous
from atrous.models.card import CARD_MARKER, render_model_card


def test_a_hand_saved_model_says_what_was_not_recorded(tmp_path):
    model = atrous.create_model("deeplabv3_resnet18", num_classes=3)
    model.save_pretrained(tmp_path / "m", metadata={"class_names": ["a", "b", "c"]})
    card = (tmp_path / "m" / "README.md").read_text()
    assert "Not recorded: this model was saved outside `atrous train`." in card
    assert "| classes | 3: a, b, c |" in card
    assert f"| parameters | {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M |" in card


def test_a_users_readme_is_never_replaced(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "README.md").write_text("# my notes\n")
    model = atrous.create_model("deeplabv3_resnet18", num_classes=3)
    with pytest.warns(UserWarning, match="was not written by atrous: left as it is"):
        model.save_pretrained(folder)
    assert (folder / "README.md").read_text() == "# my notes\n"
    assert (folder / "model.safetensors").is_file()
    # A card atrous wrote is rewritten with the model.
    (folder / "README.md").write_text(CARD_MARKER + "\nold\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.save_pretrained(folder)
    assert "old" not in (folder / "README.md").read_text()


def test_card_rendering_by_hand():
    config = {
        "name": "unet",
        "num_classes": 2,
        "metadata": {
            "dataset": "membrane",
            "class_names": ["membrane", "cell"],
            "card": {
                "data": {"dataset": "membrane", "train_split": "train", "val_split": "val",
                         "train_images": 25, "val_images": 5},
                "training": {"step": 900, "steps": 900, "seconds": 3725.0, "hardware": "X CPU (2 threads)",
                             "precision": "bf16", "torch": "2.x", "atrous": "0.1", "pretrained": None},
                "evaluation": {"split": "val", "step": 900, "images": 5,
                               "metrics": {"miou": 0.8, "pixel_accuracy": 0.9, "mean_accuracy": 0.85,
                                           "per_class": {"membrane": {"iou": 0.7}, "cell": {"iou": 0.9}}},
                               "intervals": {"miou": [0.75, 0.84], "per_class": {"membrane": [0.6, 0.8]},
                                             "resamples": 1000, "seed": 0},
                               "evaluations": 4},
            },
        },
    }  # fmt: skip
    card = render_model_card(config)
    assert "in 1 h 2 min on X CPU (2 threads)" in card
    assert "| membrane | 0.700 | [0.600, 0.800] |" in card
    assert "| cell | 0.900 | — |" in card
    assert "| **mIoU** | **0.800** | [0.750, 0.840] |" in card
    assert "percentile bootstrap over images (1000 resamples, seed 0)" in card
    assert "- The evaluation saw 5 images: read the intervals, not only the means." in card
    assert "membrane (0.700)" not in card  # 0.7 is not below 0.5
    assert "Trained from random weights on 25 images of `membrane`" in card
    assert "- Chosen as the best of up to 4 evaluations on `val`: the figures above picked this step" in card
