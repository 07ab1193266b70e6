"""`gear-trt train` and `gear-trt inspect`: instant --help, one-line user errors, an end-to-end run, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gear_trt.artifacts.checkpoint import load_checkpoint
from gear_trt.cli.main import main
from gear_trt.io import sha256_file
from gear_trt.models import count_params, scaled_spec

REPO = Path(__file__).resolve().parents[1]
TINY = ["--arch", "vgg19", "--width-mult", "0.05", "--max-per-class", "4", "--batch-size", "8", "--quiet"]


@pytest.fixture(autouse=True)
def isolated(tmp_path, tmp_path_factory, monkeypatch):
    """Runs default to a temporary GEAR_TRT_HOME, the packed-data cache is shared by this module's
    tests, and the working directory is an empty folder that must stay empty."""
    monkeypatch.setenv("GEAR_TRT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GEAR_TRT_CACHE", str(tmp_path_factory.getbasetemp() / "data-cache"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    torch.set_num_threads(1)
    yield
    assert list(cwd.iterdir()) == [], "a command wrote into the working directory"


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["grow", "--help"], ["inspect", "--help"], ["eval", "--help"]])
def test_help_is_instant_and_imports_neither_torch_nor_tensorrt(argv):
    code = (
        "import sys\nfrom gear_trt.cli.main import main\n"
        f"assert main({argv!r}) == 0\n"
        "print('HEAVY', sorted(m for m in ('torch', 'tensorrt', 'numpy', 'onnx', 'onnxruntime') if m in sys.modules))"
    )
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("HEAVY []")
    if argv[0] == "train":
        assert "--arch" in out.stdout and "--resume" in out.stdout and "--params" in out.stdout
    if argv[0] == "inspect":
        assert "--json" in out.stdout


def test_a_user_error_is_one_line_exit_2_in_a_real_process():
    out = _python("import sys\nfrom gear_trt.cli.main import main\nsys.exit(main(['train', '--arch', 'vgg20']))")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "gear-trt train: error: unknown --arch 'vgg20' -- fix: choose one of vgg19, mobilenet_v1, resnet18"]
    assert "Traceback" not in out.stderr


def _error(capsys, argv: list[str]) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith(f"gear-trt {argv[0]}: error: ") and " -- fix: " in lines[0]
    return lines[0]


def test_train_user_errors(capsys, tmp_path):
    assert "unknown --arch 'vgg20'" in _error(capsys, ["train", "--arch", "vgg20"])
    assert "both set the widths" in _error(capsys, ["train", "--arch", "vgg19", "--widths", "8", "--width-mult", "0.1"])
    assert "--jsd needs ERA views" in _error(capsys, ["train", "--arch", "vgg19", "--jsd"])
    assert "unknown lr schedule 'linear'" in _error(capsys, ["train", "--arch", "vgg19", "--schedule", "linear"])
    assert "learning rate must be > 0" in _error(capsys, ["train", "--arch", "vgg19", "--lr", "0"])
    assert "data source '/no/such/data' not found" in _error(capsys, ["train", *TINY, "--data", "/no/such/data"])
    line = _error(capsys, ["train", *TINY[:2], "--widths", "8,8,8", *TINY[4:]])
    assert "vgg19 has 16 width groups, --widths gives 3" in line and "give 16 integers" in line
    assert "not a comma-separated list of integers" in _error(capsys, ["train", *TINY[:2], "--widths", "8,x", *TINY[4:]])
    assert "is not a parameter count" in _error(capsys, ["train", *TINY[:2], "--params", "lots", *TINY[4:]])
    assert "below the smallest vgg19" in _error(capsys, ["train", *TINY[:2], "--params", "100", *TINY[4:]])
    assert "--resume needs the run directory" in _error(capsys, ["train", *TINY, "--resume"])
    assert "nothing to resume" in _error(capsys, ["train", *TINY, "--resume", "--out", str(tmp_path / "none")])
    (tmp_path / "empty").mkdir()
    assert "has no checkpoints/final.pt to resume" in _error(capsys, ["train", *TINY, "--resume", "--out", str(tmp_path / "empty")])
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    assert "already exists and is not empty" in _error(capsys, ["train", *TINY, "--out", str(tmp_path / "busy")])
    if not torch.cuda.is_available():
        assert "CUDA was requested" in _error(capsys, ["train", *TINY, "--device", "cuda"])
    assert not (tmp_path / "home").exists()  # no failed command left a run directory behind


def test_inspect_user_errors(capsys, tmp_path):
    assert "does not exist" in _error(capsys, ["inspect", str(tmp_path / "nope.pt")])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert "not a readable checkpoint" in _error(capsys, ["inspect", str(tmp_path / "junk.pt")])
    (tmp_path / "folder").mkdir()
    assert "not a gear-trt run directory" in _error(capsys, ["inspect", str(tmp_path / "folder")])


def test_train_end_to_end_then_inspect(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "2", "--out", str(out)]) == 0
    result = capsys.readouterr().out.strip().splitlines()
    spec = scaled_spec("vgg19", 0.05)
    assert len(result) == 1 and result[0].startswith(f"vgg19 {count_params(spec):,} params, 2 epochs: test acc ")
    assert result[0].endswith(str(out / "checkpoints" / "final.pt"))

    payload = load_checkpoint(out / "checkpoints" / "final.pt")
    assert payload["complete"] and payload["epoch"] == 2 and payload["spec"] == spec.to_dict()
    assert payload["classes"][:2] == ["airplane", "automobile"] and payload["extra"]["data"]["train_images"] == 40
    summary = json.loads((out / "summary.json").read_text())
    stage = summary["stages"][0]
    assert (summary["pipeline"], summary["arch"], summary["data"], summary["seed"]) == ("train", "vgg19", "builtin", 0)
    assert stage["checkpoint"] == "checkpoints/final.pt" and stage["params"] == count_params(spec)
    assert stage["clean_acc"] == payload["metrics"]["test_acc"] and stage["widths"] == list(spec.widths)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["train"]["status"] == "done"
    assert manifest["stages"]["train"]["artifacts"] == {"checkpoints/final.pt": sha256_file(out / "checkpoints" / "final.pt")}
    assert json.loads((out / "config.json").read_text())["options"]["width_mult"] == 0.05
    log = (out / "logs" / "train.log").read_text().splitlines()
    assert len(log) == 3 and "epoch 2/2" in log[-1] and "test_acc" in log[-1]

    assert main(["inspect", str(out / "checkpoints" / "final.pt"), "--history"]) == 0
    text = capsys.readouterr().out
    assert f"parameters  {count_params(spec):,}" in text and "conv16" in text and "[complete]" in text
    assert main(["inspect", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    ckpt = info["checkpoints"][0]
    assert info["kind"] == "run" and info["stages"]["train"]["status"] == "done"
    assert [g["width"] for g in ckpt["groups"]] == list(spec.widths) and ckpt["params"] == count_params(spec)
    assert sum(g["params"] for g in ckpt["groups"]) + ckpt["classifier_params"] == count_params(spec)
    assert len(ckpt["history"]) == 2

    # The Small baseline of a grown net: same family and widths, taken from a checkpoint.
    assert main(["train", "--widths-from", str(out / "checkpoints" / "final.pt"), *TINY[4:], "--epochs", "1",
                 "--out", str(tmp_path / "copy")]) == 0
    capsys.readouterr()
    assert load_checkpoint(tmp_path / "copy" / "checkpoints" / "final.pt")["spec"] == spec.to_dict()


def test_default_run_directory_goes_under_gear_trt_home(capsys, tmp_path):
    assert main(["train", *TINY, "--epochs", "1", "--max-per-class", "2", "--batch-size", "4"]) == 0
    capsys.readouterr()
    runs = list((tmp_path / "home" / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("train-") and (runs[0] / "checkpoints" / "final.pt").is_file()


def test_cli_resume_after_interrupt_matches_an_uninterrupted_run(capsys, tmp_path, monkeypatch):
    args = ["train", *TINY, "--epochs", "3"]
    assert main([*args, "--out", str(tmp_path / "full")]) == 0

    import gear_trt.train.loop as loop

    real_save = loop.save_checkpoint
    saves = []

    def save_then_ctrl_c(path, payload):
        real_save(path, payload)
        saves.append(payload["epoch"])
        raise KeyboardInterrupt  # Ctrl-C right after the first epoch's checkpoint

    monkeypatch.setattr(loop, "save_checkpoint", save_then_ctrl_c)
    assert main([*args, "--out", str(tmp_path / "cut")]) == 130
    assert saves == [1] and "re-run with --resume" in capsys.readouterr().err
    manifest = json.loads((tmp_path / "cut" / "manifest.json").read_text())
    assert manifest["stages"]["train"]["status"] == "interrupted"
    monkeypatch.setattr(loop, "save_checkpoint", real_save)

    assert "differs from the run being resumed" in _error(capsys, [*args, "--lr", "0.2", "--resume", "--out", str(tmp_path / "cut")])
    assert main(["train", "--resume", "--out", str(tmp_path / "cut"), "--quiet"]) == 0  # options come from the run
    capsys.readouterr()
    full = load_checkpoint(tmp_path / "full" / "checkpoints" / "final.pt")
    cut = load_checkpoint(tmp_path / "cut" / "checkpoints" / "final.pt")
    assert cut["complete"] and full["model"].keys() == cut["model"].keys()
    assert all(torch.equal(full["model"][k], cut["model"][k]) for k in full["model"])
    assert json.loads((tmp_path / "cut" / "manifest.json").read_text())["stages"]["train"]["status"] == "done"

    assert main(["train", "--resume", "--out", str(tmp_path / "cut"), "--quiet"]) == 0  # nothing left to do
    assert "(already complete)" in capsys.readouterr().out


def test_era_with_jsd_trains_on_three_views(capsys, tmp_path):
    out = tmp_path / "era"
    assert main(["train", *TINY, "--epochs", "1", "--augment", "era", "--jsd", "--no-nesterov", "--momentum", "0.5",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    payload = load_checkpoint(out / "checkpoints" / "final.pt")
    assert payload["extra"]["augment"] == "era" and payload["extra"]["jsd"] is True
    assert payload["config"]["nesterov"] is False and payload["config"]["momentum"] == 0.5
    assert payload["history"][0]["train_acc"] is not None  # the JSD hook returns the clean view's logits


def test_params_and_width_options_resolve_to_specs():
    from gear_trt.grow.budget import parse_count
    from gear_trt.pipeline.fixed import resolve_spec
    from gear_trt.pipeline.options import TrainOptions

    assert (parse_count("250k"), parse_count("1.2M"), parse_count("5e5"), parse_count("900")) == (250_000, 1_200_000, 500_000, 900)
    for arch, target in (("vgg19", "250k"), ("mobilenet_v1", "60k"), ("resnet18", "1M")):
        spec = resolve_spec(TrainOptions(arch=arch, params=target), num_classes=10, input_size=32)
        assert abs(count_params(spec) - parse_count(target)) / parse_count(target) < 0.03
    spec = resolve_spec(TrainOptions(arch="resnet18", width_mult=0.25), num_classes=100, input_size=64)
    assert spec == scaled_spec("resnet18", 0.25, num_classes=100, input_size=64)
    widths = ",".join(["4"] * 16)
    assert resolve_spec(TrainOptions(arch="vgg19", widths=widths), num_classes=10, input_size=32).widths == (4,) * 16


def _options(command: str) -> dict[str, str]:
    """{option string: help text} of a command's parser."""
    from gear_trt.cli.main import build_parser

    parser = build_parser([command])
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {opt: str(a.help) for a in sub._actions for opt in a.option_strings}


def test_grow_and_train_share_option_names_and_defaults():
    grow, train = _options("grow"), _options("train")
    shared = set(grow) & set(train)
    for flag in ("--data", "--image-size", "--train-per-class", "--test-per-class", "--arch", "--seed", "--batch-size", "--lr",
                 "--warmup-epochs", "--era-width", "--jsd", "--device", "--out", "--resume", "--quiet"):
        assert flag in shared, flag
    same = shared - {"--out"}  # its help names the command's own default folder
    assert {f: grow[f] for f in same} == {f: train[f] for f in same}  # the same help, so the same default in it
    assert "(default 128)" in grow["--batch-size"] and "(default 1.0)" in train["--warmup-epochs"]
    eval_, bench = _options("eval"), _options("bench")
    for flag in ("--corruptions", "--limit", "--device", "--threads"):
        assert eval_[flag] == bench[flag], flag


def test_option_defaults_are_the_library_defaults():
    from gear_trt.data.era import MAX_SEVERITY, ERAConfig
    from gear_trt.pipeline.options import ERA_MAX_SEVERITY, GrowOptions, TrainOptions
    from gear_trt.train import TrainConfig

    era, config = ERAConfig(), TrainConfig(epochs=1)
    for opts in (GrowOptions(), TrainOptions()):
        assert (opts.era_width, opts.era_depth, opts.era_severity, opts.jsd) == (era.width, era.depth, era.severity, era.jsd)
        assert opts.train_config(epochs=4) == TrainConfig(epochs=4, warmup_epochs=1.0)  # every other field: the library's default
    assert ERA_MAX_SEVERITY == MAX_SEVERITY and config.warmup_epochs == 0.0  # the commands warm up (see options.py), the library does not
