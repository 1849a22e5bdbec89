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
    bad.write_bytes(b"model:\n  name: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml is not a UTF-8 text file \(invalid start byte at byte 15\)"):
        load_config(bad)


# -- numbers as YAML 1.2 writes them ----------------------------------------------------------


def test_scientific_notation_is_a_number_in_recipes_and_overrides(tmp_path):
    path = tmp_path / "sci.yaml"
    path.write_text(
        "train:\n"
        "  lr: 1e-3\n"
        "  weight_decay: 5E-4\n"
        "  class_weights: [1e0, 2.5e-1, .5e+1]\n"
        "  loss: ohem\n"
        "  loss_options: {thresh: 7e-1, min_kept: 1e3}\n"
        "  max_time_s: 3.6e+3\n"
        "model:\n"
        "  options: {eps: -2.5e+3}\n"
    )
    config = load_config(path, ["train.grad_clip=1E1", "data.scale_range=[5e-1, 2e0]", "eval.scales=[.5e-0, 1e0]"])
    t = config.train
    assert (t.lr, t.weight_decay, t.class_weights, t.max_time_s) == (1e-3, 5e-4, [1.0, 0.25, 5.0], 3600.0)
    assert t.loss_options == {"thresh": 0.7, "min_kept": 1000.0} and config.model.options == {"eps": -2500.0}
    assert t.grad_clip == 10.0 and config.data.scale_range == [0.5, 2.0] and config.eval.scales == [0.5, 1.0]
    assert load_config(None, ["train.lr=1e-3"]).train.lr == 1e-3


def test_the_yaml_loader_changes_floats_only():
    from atrous.config import parse_yaml

    assert parse_yaml("[1e-3, 1E5, -2.5e+3, .5e-2, -.5, 1.5, 1., 2.0e-3, 7]") == [
        1e-3,
        1e5,
        -2.5e3,
        0.005,
        -0.5,
        1.5,
        1.0,
        2e-3,
        7,
    ]
    # Not numbers, as before: digits with a leading zero, versions, words; YAML 1.1's
    # booleans and null are unchanged (train.amp=off still means off).
    words = parse_yaml("[08, 1.2.3, 1e, e5, abc, off, null, 0x10]")
    assert words == ["08", "1.2.3", "1e", "e5", "abc", False, None, 16]
    assert type(parse_yaml("1e3")) is float and type(parse_yaml("1000")) is int


def test_a_written_config_reads_back_with_small_numbers(tmp_path):
    config = load_config(None, ["train.lr=1e-7", "train.weight_decay=0.0"])
    config.save(tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


# -- every value checked when loaded ----------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=0", r"train\.lr must be > 0, got 0\.0"),
        ("train.lr=-1e-3", r"train\.lr must be > 0, got -0\.001"),
        ("train.lr=.nan", r"train\.lr must be a finite number, got \.nan"),
        ("train.lr=.inf", r"train\.lr must be a finite number, got \.inf"),
        ("train.weight_decay=-1e-4", r"train\.weight_decay must be >= 0"),
        ("train.grad_clip=0", r"train\.grad_clip must be > 0, or null, got 0\.0"),
        ("train.ema=1", r"train\.ema must be a decay in \(0, 1\), e\.g\. 0\.999, or null, got 1\.0"),
        ("train.ema=0", r"train\.ema must be a decay in \(0, 1\)"),
        ("train.ema=-0.5", r"train\.ema must be a decay in \(0, 1\)"),
        ("train.ema=true", r"train\.ema must be a number"),
        ("train.ema=.nan", r"train\.ema must be a finite number"),
        ("train.momentum=1", r"train\.momentum must be in \[0, 1\), got 1\.0"),
        ("train.momentum=-0.1", r"train\.momentum must be in \[0, 1\)"),
        ("train.warmup_steps=-1", r"train\.warmup_steps must be >= 0, got -1"),
        ("train.warmup_steps=40000", r"train\.warmup_steps must be <= train\.steps \(30000\), got 40000"),
        ("train.warmup_ratio=1", r"train\.warmup_ratio must be in \[0, 1\)"),
        ("train.max_time_s=0", r"train\.max_time_s must be > 0, or null, got 0\.0"),
        ("train.max_time_s=.inf", r"train\.max_time_s must be a finite number"),
        ("train.poly_power=0", r"train\.poly_power must be > 0, got 0\.0"),
        ("train.poly_power=-0.9", r"train\.poly_power must be > 0"),
        ("train.steps=0", r"train\.steps must be >= 1, got 0"),
        ("train.grad_accum=0", r"train\.grad_accum must be >= 1"),
        ("train.eval_every=0", r"train\.eval_every must be >= 1"),
        ("train.log_every=-5", r"train\.log_every must be >= 1"),
        ("train.checkpoint_every=0", r"train\.checkpoint_every must be >= 1"),
        ("train.head_lr_mult=0", r"train\.head_lr_mult must be > 0"),
        ("train.aux_weight=-0.4", r"train\.aux_weight must be >= 0, or null"),
        ("train.class_weights=[0, 0, 0]", r"train\.class_weights must be .*not all 0.*got \[0\.0, 0\.0, 0\.0\]"),
        ("train.class_weights=[1, -1]", r"train\.class_weights must be a non-empty list of weights >= 0"),
        ("train.class_weights=[1, .nan]", r"train\.class_weights\[1\] must be a finite number"),
        ("train.optimizer=adam", r"train\.optimizer must be one of sgd, adamw, got 'adam'"),
        ("train.amp=fp8", r"train\.amp must be auto, bf16, fp16 or off, got 'fp8'"),
        ("train.device=gpu", r"train\.device must be auto, cpu, cuda or cuda:N"),
        ("train.device=cuda:x", r"train\.device must be"),
        ("train.seed=-1", r"train\.seed must be >= 0"),
        ("train.loss=dise", r"train\.loss='dise': unknown loss 'dise'\. Did you mean 'dice'"),
        ("train.loss_options={thresh: .nan}", r"train\.loss_options must be a mapping without NaN"),
        ("train.weight_map={w0: 10, sigma: 0}", r"train\.weight_map=.*sigma must be > 0"),
        ("data.crop_size=[0, 32]", r"data\.crop_size must be 2 values >= 1, got \[0, 32\]"),
        ("data.crop_size=[32]", r"data\.crop_size must be 2 values >= 1"),
        ("data.scale_range=[2.0, 0.5]", r"data\.scale_range must be two numbers 0 < low <= high"),
        ("data.scale_range=[0, 1]", r"data\.scale_range must be two numbers 0 < low <= high"),
        ("data.scale_range=[0.5, 1e9]", r"data\.scale_range must be two numbers 0 < low <= high <= 10"),
        ("data.hflip=1.5", r"data\.hflip must be in \[0, 1\], got 1\.5"),
        ("data.base_size=0", r"data\.base_size must be >= 1"),
        ("data.base_size=1.5", r"data\.base_size"),
        ("data.vflip=-0.5", r"data\.vflip must be in \[0, 1\]"),
        ("data.batch_size=0", r"data\.batch_size must be >= 1"),
        ("data.val_batch_size=0", r"data\.val_batch_size must be >= 1"),
        ("data.workers=-1", r"data\.workers must be >= 0"),
        ("data.elastic=-3", r"data\.elastic must be true, false, or a σ in pixels >= 0"),
        ("data.elastic=.nan", r"data\.elastic must be a finite number"),
        ("data.jitter=1.5", r"data\.jitter must be true \(±0\.2\), false, or a strength in \[0, 1\], got 1\.5"),
        ("data.jitter=-0.1", r"data\.jitter must be true \(±0\.2\), false, or a strength in \[0, 1\]"),
        ("data.jitter=strong", r"data\.jitter must be"),
        ("data.dataset=synthetc", r"data\.dataset='synthetc': unknown dataset 'synthetc'\. Did you mean 'synthetic'"),
        ("data.val_split=''", r"data\.val_split must be a non-empty string"),
        ("eval.scales=[]", r"eval\.scales must be a non-empty list of values > 0"),
        ("eval.scales=[1.0, 0]", r"eval\.scales must be a non-empty list of values > 0, got \[1\.0, 0\.0\]"),
        ("eval.output_stride=12", r"eval\.output_stride must be one of 8, 16, 32, or null, got 12"),
        ("eval.tile=0", r"eval\.tile must be >= 1, or null"),
        ("eval.tile_overlap=1", r"eval\.tile_overlap must be in \[0, 1\)"),
        ("model.output_stride=4", r"model\.output_stride must be one of 8, 16, 32, or null"),
        ("model.num_classes=0", r"model\.num_classes must be >= 1, or null"),
        ("model.multi_grid=[1, 0, 4]", r"model\.multi_grid must be a non-empty list of values >= 1"),
        ("model.name=deeplab_resnet18", r"model\.name='deeplab_resnet18': unknown model .* Did you mean"),
        ("model.checkpoint_path=''", r"model\.checkpoint_path must be a non-empty string, or null"),
    ],
)
def test_values_that_cannot_be_meant_are_refused_when_loaded(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


@pytest.mark.parametrize(
    "override",
    [
        "train.max_time_s=1e-3",
        "train.momentum=0",
        "train.warmup_ratio=0",
        "train.amp=off",
        "train.amp=false",
        "train.device=cuda:1",
        "data.scale_range=[1.0, 1.0]",
        "data.elastic=true",
        "data.elastic=12.5",
        "data.jitter=0.4",
        "data.jitter=0",
        "data.jitter=false",
        "data.dataset=DSB2018_nuclei",
        "model.output_stride=32",
        "train.class_weights=[0, 1]",
        "eval.tile=1",
    ],
)
def test_edge_values_that_can_be_meant_are_accepted(override):
    load_config(None, [override])


def test_every_field_has_a_check():
    import dataclasses

    from atrous.config import CHECKS, Config

    keys = {
        f"{section.name}.{f.name}"
        for section in dataclasses.fields(Config)
        for f in dataclasses.fields(getattr(Config(), section.name))
    }
    assert keys == set(CHECKS)


def test_configs_built_in_python_get_the_same_checks():
    from atrous.config import Config, TrainConfig, validate_config

    with pytest.raises(ConfigError, match=r"train\.poly_power must be > 0, got 0\.0"):
        validate_config(Config(train=TrainConfig(poly_power=0.0)))
    with pytest.raises(ConfigError, match=r"train\.lr must be a number, got '0\.1'"):
        validate_config(Config(train=TrainConfig(lr="0.1")))  # type: ignore[arg-type]
    assert validate_config(Config()) == Config()


def test_a_recipe_shipped_with_atrous_passes_the_checks():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    recipes = [*root.glob("configs/*.yaml"), *root.glob("src/atrous/recipes/*.yaml")]
    assert recipes
    for recipe in recipes:
        load_config(recipe)


def test_base_config_then_recipe_then_overrides(tmp_path):
    recorded = tmp_path / "config.yaml"
    load_config(None, ["train.steps=7", "train.lr=0.5", "data.batch_size=3"]).save(recorded)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  lr: 0.25\n")
    config = load_config(recipe, ["data.batch_size=5"], base=recorded)
    assert (config.train.steps, config.train.lr, config.data.batch_size) == (7, 0.25, 5)
    recorded.write_text(recorded.read_text().replace("lr: 0.5", "lr: -1.0"))
    with pytest.raises(ConfigError, match=r"config\.yaml: train\.lr must be > 0, got -1\.0"):
        load_config(None, [], base=recorded)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.options={root: /x}"], r"data\.options\.root is not a dataset option: set data\.root instead"),
        (["data.train_options={split: val}"], r"data\.train_options\.split is not a dataset option"),
        (["model.name=unet", "data.vflip=0.5"], r"data\.vflip=0\.5 applies to instance models only"),
        (["model.name=maskrcnn_resnet18_fpn", "model.output_stride=8"], r"model\.output_stride=8 does not apply"),
        (["model.name=maskrcnn_resnet18_fpn", "model.options={num_classes: 5}"], r"set model\.num_classes instead"),
        (
            ["model.name=maskrcnn_resnet18_fpn", "data.dataset=dsb2018_nuclei", "data.base_size=256"],
            r"data\.base_size=256 applies to semantic models only",
        ),
        (["model.name=unet", "data.base_size=256", "eval.tile=388"], r"data\.base_size=256 resizes .*give one of them"),
        (["model.name=maskrcnn_resnet18_fpn", "data.elastic=true"], r"data\.elastic=True applies to semantic models"),
        (["model.name=maskrcnn_resnet18_fpn", "data.elastic=4"], r"data\.elastic=4\.0 applies to semantic models"),
        (
            ["model.name=maskrcnn_resnet18_fpn", "data.crop_size=[256, 256]"],
            r"data\.crop_size=\[256, 256\] applies to semantic models only; maskrcnn_resnet18_fpn would ignore it",
        ),
    ],
)
def test_options_a_run_would_ignore_or_collide_on_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)
    load_config(None, ["model.name=maskrcnn_resnet18_fpn", "data.vflip=0.5", "data.dataset=dsb2018_nuclei"])
    load_config(None, ["model.name=maskrcnn_resnet18_fpn", "data.elastic=0", "data.jitter=0.3"])
    load_config(None, ["model.name=maskrcnn_resnet18_fpn", "data.crop_size=[512, 512]"])  # the default: no harm


def test_whole_numbers_in_scientific_notation_fill_integer_fields():
    config = load_config(None, ["train.steps=3e4", "train.checkpoint_every=1E3", "data.crop_size=[5.12e2, 512]"])
    assert config.train.steps == 30000 and isinstance(config.train.steps, int)
    assert config.train.checkpoint_every == 1000 and config.data.crop_size == [512, 512]
    with pytest.raises(ConfigError, match=r"train\.steps must be an integer"):
        load_config(None, ["train.steps=2.5e0"])
