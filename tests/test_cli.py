import subprocess
import sys

from atrous.cli import main


def test_models_lists_the_registry(capsys):
    assert main(["models", "pspnet*"]) == 0
    out = capsys.readouterr().out
    assert "pspnet_resnet50" in out and "pspnet_resnet101" in out and "deeplab" not in out


def test_demo_runs_every_matching_model(capsys):
    assert main(["demo", "--size", "33", "--pattern", "*resnet18"]) == 0
    out = capsys.readouterr().out
    assert "deeplabv3plus_resnet18" in out and "1×21×33×33" in out


def test_bad_usage_is_one_line_and_exit_code_2(capsys):
    assert main(["demo", "--size", "0"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "atrous demo: error: --size must be >= 1, got 0"
    assert main(["models", "nothing*"]) == 2


def test_console_script_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "atrous.cli", "models", "fcn*"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "fcn_resnet101" in result.stdout
