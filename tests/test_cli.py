import json

import pytest

from emolib.cli import build_parser, emit
from tests.conftest import run_cli

SUBCOMMANDS = ["faces", "transcribe", "melody", "generate", "image2music", "app", "retrain"]


def test_help_lists_every_subcommand():
    res = run_cli("--help")
    assert res.returncode == 0
    for name in SUBCOMMANDS:
        assert name in res.stdout


@pytest.mark.parametrize("argv", [["faces", "--help"], ["faces", "predict", "--help"], ["faces", "evaluate", "--help"],
                                  ["faces", "train", "--help"], ["transcribe", "--help"], ["melody", "train", "--help"],
                                  ["generate", "--help"], ["image2music", "--help"], ["app", "--help"],
                                  ["retrain", "--help"]])
def test_each_subcommand_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 0
    assert "usage: emolib" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["bogus"], ["faces", "predict", "x.jpg", "--bad-flag"],
                                  ["generate", "--emotion", "joyful", "--out", "o"],
                                  ["generate", "--emotion", "sad", "--out", "o", "--count", "many"], []])
def test_usage_errors_are_one_line_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("emolib")


def test_usage_error_from_the_console_entry_point():
    res = run_cli("nonsense")
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.strip().count("\n") == 0
    assert "invalid choice: 'nonsense'" in res.stderr


def test_emit_writes_one_json_object_per_line(capsys):
    import numpy as np

    emit({"a": 1, "arr": np.arange(3), "f": np.float32(0.5)})
    emit({"b": "x"})
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [{"a": 1, "arr": [0, 1, 2], "f": 0.5}, {"b": "x"}]


def test_library_chatter_on_stdout_cannot_corrupt_json_lines(monkeypatch, capsys):
    from emolib import cli

    def noisy(args):
        print("'fluidsynth' was found at libfluidsynth.so.3.")  # as pyfluidsynth does without ldconfig on PATH
        emit({"ok": True})
        return 0

    monkeypatch.setattr(cli, "_retrain", noisy)
    assert cli.main(["retrain", "--config", "x.yaml"]) == 0
    captured = capsys.readouterr()
    assert [json.loads(line) for line in captured.out.splitlines()] == [{"ok": True}]
    assert "fluidsynth" in captured.err


def test_faces_train_without_options_trains_with_the_library_defaults(monkeypatch):
    import emolib.face_train as face_train

    seen = {}

    def fake_train(data, out, config, **kwargs):
        seen.update(kwargs, data=data, out=out, config=config)
        return {"accuracy": 0.5}

    args = build_parser().parse_args(["faces", "train", "--data", "faces", "--out", "m.keras"])
    monkeypatch.setattr(face_train, "train", fake_train)
    args.argv = ["faces", "train", "--data", "faces", "--out", "m.keras"]
    assert args.func(args) == 0
    assert (seen["data"], seen["out"]) == ("faces", "m.keras")
    assert seen["command"] == "emolib faces train --data faces --out m.keras"
    assert seen["config"] == face_train.FaceTrainConfig()  # the flags' defaults are the recipe's fields
    assert seen["config"].classes == ("angry", "happy", "neutral", "sad")


def test_faces_train_flags_come_from_the_recipe_fields():
    import dataclasses

    import emolib.face_train as face_train

    args = build_parser().parse_args(["faces", "train", "--data", "d", "--out", "m.keras", "--lr", "0.01",
                                      "--learning-rate", "0.02", "--no-tta-flip", "--minutes", "5", "--max-files", "7",
                                      "--convs-per-block", "2", "--classes", "happy", "sad"])
    config = face_train.FaceTrainConfig(**{f.name: getattr(args, f.name)
                                           for f in dataclasses.fields(face_train.FaceTrainConfig)})
    assert config.learning_rate == 0.02 and config.tta_flip is False and config.time_budget_min == 5.0
    assert config.convs_per_block == 2 and config.classes == ("happy", "sad") and config.limit_per_class == 7
    # the older spellings (recorded in shipped metrics.json commands) still parse
    old = build_parser().parse_args(["faces", "train", "--data", "d", "--out", "m.keras", "--time-budget", "3",
                                     "--time-budget-min", "4", "--limit", "2", "--limit-per-class", "3", "--init", "x"])
    assert (old.time_budget_min, old.limit_per_class, old.init_model) == (4.0, 3, "x")
    usage = run_cli("faces", "train", "--help").stdout
    assert "[--minutes MIN]" in usage and "[--max-files" in usage and "[--time-budget " not in usage


def test_app_command_calls_serve_with_its_flags(monkeypatch):
    import emolib.app
    from emolib import cli

    calls = []
    monkeypatch.setattr(emolib.app, "serve", lambda *a, **k: calls.append((a, k)) or 0)
    assert cli.main(["app", "--host", "0.0.0.0", "--port", "9001", "--out", "o", "--cull-minutes", "3"]) == 0
    assert calls == [(("0.0.0.0", 9001, "o"), {"cull_minutes": 3.0, "pool": 2, "open_browser": False})]
