"""``atrous analyze`` in process: the report, --json and -o; refusals in one line, exit 2."""

import json

from atrous.cli import main

ARGS = ["analyze", "deeplabv3_resnet18", "--size", "97", "97", "--erf-size", "33", "33", "--erf-samples", "1"]
SECTIONS = ("Theoretical receptive fields", "Valid weights", "Adviser", "Effective receptive fields")
PLOTS = {"valid_weights.png", "valid_weights_model.png"} | {
    f"erf_random_{m}.png" for m in ("relu", "layer1", "layer2", "layer3", "layer4", "logits")
}


def test_report_json_and_plots(tmp_path, capsys):
    out, record = tmp_path / "plots", tmp_path / "analysis.json"
    assert main([*ARGS, "--json", str(record), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    for section in SECTIONS:
        assert section in text
    assert "rate  12: degenerate" in text  # 97 at OS 16: 7×7 features
    data = json.loads(record.read_text())
    assert data["model"] == "deeplabv3_resnet18" and data["size"] == [97, 97] and data["output_stride"] == 16
    assert {r["name"] for r in data["receptive_fields"]} >= {"backbone.layer4", "classifier.0.convs.3", ""}
    assert [s["output_stride"] for s in data["advisor"]["strides"]] == [8, 16, 32]
    assert len(data["effective_receptive_fields"]["maps"]) == 6
    assert {p.name for p in out.iterdir()} == PLOTS
    for name in PLOTS:
        assert str(out / name) in text  # every written file is listed

    # Again, without --overwrite: refused before anything is written, in one line.
    before = {p: p.stat().st_mtime_ns for p in [record, *out.iterdir()]}
    assert main([*ARGS, "--json", str(record), "-o", str(out), "--no-erf"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0] and "--overwrite" in err[0]
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert main([*ARGS, "--json", str(record), "--overwrite", "--output-stride", "8", "--no-erf"]) == 0
    assert json.loads(record.read_text())["output_stride"] == 8


def test_bad_arguments_are_one_line_exit_2(capsys):
    for argv, named in (
        (["analyze", "deeplabv3_resnet18", "--size", "0", "65"], "--size"),
        (["analyze", "deeplabv3_resnet18", "--output-stride", "4"], "--output-stride"),
        (["analyze", "deeplabv3_resnt18"], "deeplabv3_resnet18"),  # did you mean
        (["analyze", "runs/missing"], "runs/missing"),
        (["analyze", "fcn8s_vgg16", "--output-stride", "8", "--no-erf"], "output stride"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("atrous analyze: error: ") and named in err[0], (argv, err)


def test_a_saved_model_is_read_with_its_weights_and_never_written_over(tmp_path, capsys):
    from atrous import create_model
    from atrous.analysis import load_for_analysis

    folder = tmp_path / "saved"
    create_model("deeplabv3_mobilenetv2", num_classes=3).save_pretrained(folder)
    model = load_for_analysis(folder)
    assert model.weight_kinds == ["trained", "random"] and next(model.arch.parameters()).is_meta
    config = (folder / "config.json").read_bytes()
    assert main(["analyze", str(folder), "--no-erf", "--json", str(folder / "config.json"), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would overwrite the model's file" in err[0]
    assert (folder / "config.json").read_bytes() == config
