import pytest
import yaml

from atrous.config import ConfigError, load_config


def test_recipe_then_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "pspnet_resnet50"}, "train": {"lr": 0.01, "steps": 10}}))
    config = load_config(path, ["train.lr=0.02", "data.crop_size=[64, 96]", "data.options.num_samples=5"])
    assert config.model.name == "pspnet_resnet50"
    assert config.train.lr == 0.02 and config.train.steps == 10
    assert config.data.crop_size == [64, 96] and config.data.options == {"num_samples": 5}


def test_resolved_config_round_trips(tmp_path):
    config = load_config(None, ["train.steps=5", "model.multi_grid=[1, 2, 4]"])
    config.save(tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lrr=1", r"unknown key train\.lrr\. Did you mean 'lr'\?"),
        ("trian.lr=1", r"unknown key config\.trian"),
        ("train.lr=fast", r"train\.lr must be a number, got 'fast'"),
        ("train.steps=1.5", r"train\.steps must be an integer"),
        ("model.aux=maybe", r"model\.aux must be true or false"),
        ("data.crop_size=512", r"data\.crop_size must be a list"),
        ("lr=0.1", r"--set expects section\.key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_recipe_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match=r"bad\.yaml is not valid YAML"):
        load_config(bad)
