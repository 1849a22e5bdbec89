"""temperature.json: one rule for logits and averaged probabilities, and the file's checks."""

from __future__ import annotations

import json

import pytest
import torch

from atrous.inference.temperature import TEMPERATURE_NAME, read_temperature, scaled_probabilities, write_temperature


def test_one_rule_for_logits_and_probabilities():
    z = torch.randn(2, 5, 3, 4, generator=torch.Generator().manual_seed(0)) * 4
    expected = (z / 1.7).softmax(dim=1)  # Guo et al.'s temperature scaling
    assert torch.allclose(scaled_probabilities(z, logits=True, temperature=1.7), expected, atol=1e-6)
    from_probs = scaled_probabilities(z.softmax(dim=1), logits=False, temperature=1.7)
    assert torch.allclose(from_probs, expected, atol=1e-6)  # log softmax(z) = z − const
    assert torch.equal(from_probs.argmax(dim=1), z.argmax(dim=1))
    assert torch.allclose(scaled_probabilities(z, logits=True, temperature=None), z.softmax(dim=1))
    p = z.softmax(dim=1)
    assert scaled_probabilities(p, logits=False, temperature=None) is p


def test_write_then_read(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    write_temperature(tmp_path, 1.25, {"fitted_on": {"split": "val"}})
    assert read_temperature(tmp_path) == 1.25
    record = json.loads((tmp_path / TEMPERATURE_NAME).read_text())
    assert record["fitted_on"] == {"split": "val"} and (tmp_path / "config.json").read_text() == "{}"
    assert read_temperature(tmp_path / "elsewhere") is None


@pytest.mark.parametrize("value", [0, -1, "2", float("nan"), True])
def test_a_bad_temperature_is_refused_with_the_file_named(tmp_path, value):
    (tmp_path / TEMPERATURE_NAME).write_text(json.dumps({"temperature": value}))
    with pytest.raises(ValueError, match=TEMPERATURE_NAME):
        read_temperature(tmp_path)
