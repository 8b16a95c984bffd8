"""Retraining: papermill runs, the promotion gate, atomic promotion, history, kill safety.

The notebooks here are fast stand-ins with the agreed parameter names (tests/fake_notebooks.py):
they copy a tiny real .keras model and write metrics.json with the metric value the test chooses.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from emolib import cli, melody, retrain
from emolib.errors import EmolibError
from emolib.paths import REPO_ROOT
from tests.fake_notebooks import (
    FACE_BODY,
    FACE_PARAMS,
    MELODY_BODY,
    MELODY_PARAMS,
    TRANSCRIBE_BODY,
    TRANSCRIBE_PARAMS,
    make_notebook,
)
from tests.mididata import random_generator

FACE_RULE = {"metric": "val_macro_f1", "mode": "max", "margin": 0.0, "comparable": ["classes"]}
LOSS_RULE = {"metric": "val_loss", "mode": "min", "margin": 0.0}


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def keras_models(tmp_path_factory):
    """Two tiny real .keras models with different weights: the current one (A) and a candidate (B)."""
    import keras

    out = tmp_path_factory.mktemp("keras")
    paths = {}
    for name, value in (("A", 0.25), ("B", 0.75)):
        model = keras.Sequential([keras.Input((3,)),
                                  keras.layers.Dense(2, kernel_initializer=keras.initializers.Constant(value))])
        paths[name] = out / f"{name}.keras"
        model.save(paths[name])
        # and a melody generator bundle whose first LSTM weight is the same value
        gen = random_generator(seed=1)
        gen.weights["lstm_0/0"][0, 0] = value
        melody.save_generator(out / f"melody_{name}", gen.weights, gen.config, gen.primers, ["x.mid"] * 4)
        paths[f"melody_{name}"] = out / f"melody_{name}" / "generator.npz"
    return paths


@pytest.fixture
def world(tmp_path, keras_models):
    """Tiny data, the three stand-in notebooks, a models folder holding current models (A), a config writer."""
    data = tmp_path / "data"
    for cls in ("angry", "happy", "neutral", "sad"):
        for k in range(3):
            p = data / "fer2013" / "train" / cls / f"{k}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"jpg")
    for emo in ("happy", "sad"):
        for k in range(2):
            p = data / "music" / "midi" / emo / f"{k}.mid"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"MThd")
            p = data / "mp3" / emo / f"{k}.mp3"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"ID3")
    nbs = tmp_path / "notebooks"
    make_notebook(nbs / "01_emotion_cnn.ipynb", FACE_PARAMS, FACE_BODY)
    make_notebook(nbs / "02_mp3_to_midi.ipynb", TRANSCRIBE_PARAMS, TRANSCRIBE_BODY)
    make_notebook(nbs / "03_train_rnn_per_emotion.ipynb", MELODY_PARAMS, MELODY_BODY)
    models = tmp_path / "models"
    _install(models / "face", keras_models["A"],
             {"val": {"macro_f1": 0.6}, "classes": ["angry", "happy", "neutral", "sad"]})
    (models / "face" / "MODEL_CARD.md").write_text("# the face model\n")
    for emo in ("happy", "sad"):
        _install(models / "melody" / emo, keras_models["melody_A"],
                 {"val": {"nll": 1.0}, "data": {"midi_dir": "/elsewhere/music/midi"}, "config": {"seed": 0}})

    def config(face: dict | None = None, melody: dict | None = None, mp3: bool = False, melody_enabled: bool = True,
               **top) -> Path:
        cfg = {
            "models_dir": str(models), "runs_dir": "runs",
            "data": {"root": str(data), "mp3": str(data / "mp3") if mp3 else None},
            "notebooks": {
                "mp3_to_midi": {"notebook": str(nbs / "02_mp3_to_midi.ipynb"), "parameters": {"WORKERS": 1}},
                "emotion_cnn": {"notebook": str(nbs / "01_emotion_cnn.ipynb"),
                                "parameters": {"SOURCE_MODEL": str(keras_models["B"]), "EPOCHS": 1, **(face or {})}},
                "melody": {"notebook": str(nbs / "03_train_rnn_per_emotion.ipynb"), "enabled": melody_enabled,
                           "parameters": {"SOURCE_BUNDLE": str(keras_models["melody_B"]), **(melody or {})}},
            },
            "gate": {"face": {"imports": [], "loader": None}},
            **top,
        }
        path = tmp_path / "retrain.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return {"root": tmp_path, "data": data, "models": models, "config": config, "keras": keras_models}


def _install(folder: Path, model: Path, metrics: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ("model.keras" if model.suffix == ".keras" else model.name)).write_bytes(model.read_bytes())
    (folder / "metrics.json").write_text(json.dumps(metrics))


def _snapshot(models: Path) -> dict[str, bytes]:
    return {str(p.relative_to(models)): p.read_bytes() for p in sorted(models.rglob("*"))
            if p.is_file() and "versions" not in p.parts and p.name != retrain.LOCK_NAME}


def _first_weight(path: Path) -> float:
    import keras

    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    return float(model.get_weights()[0].flat[0])


# --------------------------------------------------------------------------- the gate, pure
@pytest.mark.parametrize("cand, cur, rule, promote", [
    (0.70, 0.60, FACE_RULE, True),
    (0.60, 0.60, FACE_RULE, True),                      # "at least the current one's"
    (0.50, 0.60, FACE_RULE, False),
    (0.62, 0.60, {**FACE_RULE, "margin": 0.05}, False),  # must beat it by the margin
    (0.66, 0.60, {**FACE_RULE, "margin": 0.05}, True),
    (0.80, 1.00, LOSS_RULE, True),                       # lower loss is better
    (1.20, 1.00, LOSS_RULE, False),
    (float("nan"), 1.00, LOSS_RULE, False),
])
def test_gate_compares_the_same_metric_in_its_direction(cand, cur, rule, promote):
    key = rule["metric"]
    decision = retrain.gate({key: cand}, {key: cur}, rule)
    assert decision.promote is promote, decision.reason
    assert key in decision.reason


def test_gate_refuses_what_it_cannot_compare():
    assert retrain.gate({"val_loss": 0.5}, None, LOSS_RULE, current_exists=False).promote  # nothing to lose
    d = retrain.gate({"val_loss": 0.5}, {"loss": 0.1}, LOSS_RULE)  # current has the model but not the metric
    assert not d.promote and "cannot be compared" in d.reason
    d = retrain.gate({"loss": 0.5}, {"val_loss": 1.0}, LOSS_RULE)
    assert not d.promote and "candidate metrics.json has no finite 'val_loss'" in d.reason
    d = retrain.gate({"val_macro_f1": 0.9, "classes": ["happy", "sad"]},
                     {"val_macro_f1": 0.6, "classes": ["angry", "happy", "neutral", "sad"]}, FACE_RULE)
    assert not d.promote and "not comparable: classes differ" in d.reason
    by_data = {**LOSS_RULE, "comparable": ["parameters.midi_dir"]}
    here, there = ({"val_loss": 0.5, "parameters": {"midi_dir": d}} for d in ("/srv/data/music/midi",
                                                                              "/home/ci/shared/data/music/midi"))
    assert retrain.gate(here, {**there, "val_loss": 0.6}, by_data).promote  # the same dataset on another machine
    mp3 = {"val_loss": 0.1, "parameters": {"midi_dir": "/srv/runs/midi_from_mp3"}}
    d = retrain.gate(mp3, {**there, "val_loss": 0.6}, by_data)
    assert not d.promote and d.reason.startswith("not comparable: parameters.midi_dir differs")
    nested = {**LOSS_RULE, "metric": "validation.loss"}
    assert retrain.gate({"validation": {"loss": 0.5}}, {"validation": {"loss": 0.7}}, nested).promote


# --------------------------------------------------------------------------- promotion, pure
def test_promote_keeps_the_previous_version_and_replaces_atomically(tmp_path):
    cur, cand = tmp_path / "models" / "face", tmp_path / "cand"
    _write(cur, b"old-model", {"val_macro_f1": 0.5})
    _write(cand, b"new-model", {"val_macro_f1": 0.7})
    versions = tmp_path / "models" / "versions" / "face"
    prev = retrain.promote(cand, cur, ["model.keras", "metrics.json"], versions, "20260101T000000Z")
    assert (cur / "model.keras").read_bytes() == b"new-model"
    assert json.loads((cur / "metrics.json").read_text()) == {"val_macro_f1": 0.7}
    assert prev == versions / "20260101T000000Z" and (prev / "model.keras").read_bytes() == b"old-model"
    assert sorted(p.name for p in cur.iterdir()) == ["metrics.json", "model.keras"]  # no staging/journal left
    for k in range(1, 5):  # older versions are pruned beyond keep_versions
        retrain.promote(cand, cur, ["model.keras", "metrics.json"], versions, f"2026010{k}T000000Z", keep_versions=2)
    assert sorted(p.name for p in versions.iterdir()) == ["20260103T000000Z", "20260104T000000Z"]


def test_a_promotion_killed_between_renames_is_rolled_forward(tmp_path, monkeypatch):
    cur, cand = tmp_path / "models" / "face", tmp_path / "cand"
    _write(cur, b"old-model", {"val_macro_f1": 0.5})
    _write(cand, b"new-model", {"val_macro_f1": 0.7})
    real_replace, calls = os.replace, []

    def dying_replace(src, dst):  # the process "dies" right after the model file is renamed
        calls.append(Path(dst).name)
        if Path(dst).name == "metrics.json" and "staging" in Path(src).name:
            raise KeyboardInterrupt("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(retrain.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        retrain.promote(cand, cur, ["model.keras", "metrics.json"], tmp_path / "models" / "versions" / "face", "S1")
    monkeypatch.setattr(retrain.os, "replace", real_replace)
    assert (cur / retrain.JOURNAL).exists()
    assert (cur / "model.keras").read_bytes() == b"new-model"  # every file is whole: old or new, never torn
    notes = retrain.recover(tmp_path / "models")
    assert notes and "finished an interrupted promotion" in notes[0]
    assert json.loads((cur / "metrics.json").read_text()) == {"val_macro_f1": 0.7}
    assert sorted(p.name for p in cur.iterdir()) == ["metrics.json", "model.keras"]


def test_recover_drops_staging_files_of_a_run_killed_before_its_journal(tmp_path):
    cur = tmp_path / "models" / "face"
    _write(cur, b"old-model", {"val_macro_f1": 0.5})
    (cur / f"{retrain.STAGING_PREFIX}S1-model.keras").write_bytes(b"half")
    retrain.recover(tmp_path / "models")
    assert sorted(p.name for p in cur.iterdir()) == ["metrics.json", "model.keras"]
    assert (cur / "model.keras").read_bytes() == b"old-model"


def _write(folder: Path, model: bytes, metrics: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.keras").write_bytes(model)
    (folder / "metrics.json").write_text(json.dumps(metrics))


# --------------------------------------------------------------------------- whole runs
def test_a_candidate_that_does_not_load_is_never_promoted(tmp_path, keras_models):
    broken = tmp_path / "model.keras"
    broken.write_bytes(b"PK not really a model")
    assert retrain.verify_loads(keras_models["B"], []) is None
    assert retrain.verify_loads(broken, []).startswith("candidate does not load: ")
    assert retrain.verify_loads(keras_models["B"], [], "keras.saving:load_model") is None
    assert "ModuleNotFoundError" in retrain.verify_loads(keras_models["B"], [], "emolib.no_such:load_model")


def test_a_worse_candidate_keeps_the_current_models(world):
    before = _snapshot(world["models"])
    record = retrain.retrain(world["config"](face={"VAL_MACRO_F1": 0.5},
                                             melody={"VAL_NLL": {"happy": 1.5, "sad": 1.01}}))
    assert record["status"] == "ok"
    assert _snapshot(world["models"]) == before
    assert [(m["name"], m["promoted"]) for m in record["models"]] == [
        ("face", False), ("melody/happy", False), ("melody/sad", False)]
    face = record["models"][0]
    assert face["candidate"] == 0.5 and face["current"] == 0.6
    assert face["reason"] == "val.macro_f1 0.5 < current 0.6 + margin 0 (higher is better)"
    run_dir = Path(record["run_dir"])
    assert run_dir.parent == world["root"] / "runs"
    for name in ("01_emotion_cnn.ipynb", "03_train_rnn_per_emotion.ipynb", "run.json", "retrain.log",
                 "candidates/face/model.keras", "candidates/face/metrics.json",
                 "candidates/melody/happy/generator.npz", "candidates/melody/sad/metrics.json"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "02_mp3_to_midi.ipynb").exists()  # no MP3 folder configured
    history = retrain.read_history(world["root"] / "runs" / "history.jsonl")
    assert len(history) == 1 and history[0]["run"] == run_dir.name
    assert history[0]["data"]["fer2013"]["files"] == 12
    assert history[0]["data"]["fer2013"]["per_folder"]["train/happy"] == 3
    assert history[0]["data"]["midi"]["per_folder"] == {"happy": 2, "sad": 2}
    assert all(m["reason"] for m in history[0]["models"])


def test_a_better_candidate_is_promoted_and_still_loads(world):
    models = world["models"]
    old_face = (models / "face" / "model.keras").read_bytes()
    record = retrain.retrain(world["config"](face={"VAL_MACRO_F1": 0.7},
                                             melody={"VAL_NLL": {"happy": 0.8, "sad": 1.2}}))
    promoted = {m["name"]: m["promoted"] for m in record["models"]}
    assert promoted == {"face": True, "melody/happy": True, "melody/sad": False}
    assert (models / "face" / "model.keras").read_bytes() == world["keras"]["B"].read_bytes()
    assert (models / "face" / "model.keras").stat().st_mode & 0o044 == 0o044  # readable by the demo's user
    assert json.loads((models / "face" / "metrics.json").read_text())["val"]["macro_f1"] == 0.7
    assert (models / "face" / "MODEL_CARD.md").exists()  # files the candidate lacks stay
    assert (models / "melody" / "happy" / "generator.npz").read_bytes() == world["keras"]["melody_B"].read_bytes()
    assert (models / "melody" / "happy" / "model_card.txt").read_text() == "happy"  # the whole folder
    assert (models / "melody" / "sad" / "generator.npz").read_bytes() == world["keras"]["melody_A"].read_bytes()
    assert not (models / "melody" / "happy" / "sample.mid").exists()  # excluded: not part of the model
    assert _first_weight(models / "face" / "model.keras") == 0.75  # the promoted file is a loadable model
    promoted_melody = melody.load_generator(None, models / "melody" / "happy")  # loads: the gate checked it
    assert promoted_melody.weights["lstm_0/0"][0, 0] == 0.75
    assert melody.load_generator(None, models / "melody" / "sad").weights["lstm_0/0"][0, 0] == 0.25  # kept
    versions = list((models / "versions" / "face").iterdir())
    assert len(versions) == 1 and (versions[0] / "model.keras").read_bytes() == old_face
    assert sorted(p.name for p in versions[0].iterdir()) == ["MODEL_CARD.md", "metrics.json", "model.keras"]
    assert record["models"][0]["previous_version"] == str(versions[0])
    assert record["models"][0]["candidate_metrics"]["val.macro_f1"] == 0.7
    assert not list(models.rglob(f"{retrain.STAGING_PREFIX}*")) and not list(models.rglob(retrain.JOURNAL))
    # a second, equal run compares against the promoted metrics, not the old ones
    again = retrain.retrain(world["config"](face={"VAL_MACRO_F1": 0.65},
                                            melody={"VAL_NLL": {"happy": 0.8, "sad": 1.2}}))
    assert again["models"][0]["current"] == 0.7 and not again["models"][0]["promoted"]
    assert again["models"][1]["promoted"]  # equal loss: "at least the current one's"
    assert len(retrain.read_history(world["root"] / "runs" / "history.jsonl")) == 2


def test_mp3_folder_runs_02_first_and_03_trains_on_its_midi(world):
    record = retrain.retrain(world["config"](mp3=True, face={"VAL_MACRO_F1": 0.1}))
    run_dir = Path(record["run_dir"])
    assert [n["step"] for n in record["notebooks"]] == ["mp3_to_midi", "emotion_cnn", "melody"]
    assert (run_dir / "02_mp3_to_midi.ipynb").is_file()
    midi = world["root"] / "runs" / "midi_from_mp3"  # kept between runs, so transcription resumes
    assert record["notebooks"][2]["parameters"]["MIDI_DIR"] == str(midi)
    assert record["data"]["mp3"]["per_folder"] == {"happy": 2, "sad": 2}
    assert record["data"]["midi"]["path"] == str(midi) and record["data"]["midi"]["files"] == 4
    # the candidates learned other music than the current models: their losses are not compared
    assert [(m["name"], m["promoted"]) for m in record["models"][1:]] == [("melody/happy", False),
                                                                          ("melody/sad", False)]
    assert record["models"][1]["reason"].startswith("not comparable: data.midi_dir differs")


def test_a_failing_notebook_stops_promotion_and_names_notebook_and_cell(world, capsys):
    before = _snapshot(world["models"])
    config = world["config"](face={"VAL_MACRO_F1": 0.99}, melody={"FAIL": True})
    assert cli.main(["retrain", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "03_train_rnn_per_emotion.ipynb" in err and "cell 5" in err
    assert "ValueError: deliberate failure in the melody notebook" in err
    assert _snapshot(world["models"]) == before  # the better face candidate was not promoted either
    (record,) = retrain.read_history(world["root"] / "runs" / "history.jsonl")
    assert record["status"] == "failed" and record["models"] == []
    assert [n["status"] for n in record["notebooks"]] == ["ok", "failed"]
    executed = Path(record["run_dir"]) / "03_train_rnn_per_emotion.ipynb"
    assert "deliberate failure" in executed.read_text()  # the executed copy keeps the traceback


def test_a_cell_timeout_is_a_notebook_failure_naming_the_cell(world, capsys):
    before = _snapshot(world["models"])
    config = world["config"](face={"SLEEP": 30}, melody_enabled=False, cell_timeout=2)
    assert cli.main(["retrain", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "01_emotion_cnn.ipynb: cell 5 (In [" in err and "CellTimeoutError" in err, err
    assert _snapshot(world["models"]) == before


def test_config_naming_a_parameter_the_notebook_lacks_fails_before_running(world):
    config = world["config"](melody={"TEMPO": 120})
    with pytest.raises(EmolibError, match=r"03_train_rnn_per_emotion.ipynb: the parameters cell has no \['TEMPO'\]"):
        retrain.retrain(config)
    (record,) = retrain.read_history(world["root"] / "runs" / "history.jsonl")
    assert record["notebooks"] == [] and record["status"] == "failed"


def test_check_prints_the_plan_and_runs_nothing(world):
    from tests.conftest import run_cli

    res = run_cli("retrain", "--config", str(world["config"](mp3=True)), "--check")
    assert res.returncode == 0, res.stderr
    plan = [json.loads(line) for line in res.stdout.splitlines()]
    assert [p["step"] for p in plan] == ["mp3_to_midi", "emotion_cnn", "melody"]
    runs = world["root"] / "runs"
    assert plan[1]["parameters"]["OUT_MODEL"] == str(runs / "<run>" / "candidates" / "face" / "model.keras")
    assert plan[2]["parameters"]["MIDI_DIR"] == plan[0]["parameters"]["MIDI_OUT_DIR"] == str(runs / "midi_from_mp3")
    assert not (runs / "midi_from_mp3").exists() and not list(runs.glob("2*"))
    res = run_cli("retrain", "--config", str(world["config"](face={"EPOCH": 3})), "--check")
    assert res.returncode == 1 and "01_emotion_cnn.ipynb: the parameters cell has no ['EPOCH']" in res.stderr


def test_config_errors_name_the_file(world, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"notebooks": {"emotion_cnn": {"parameters": {"OUT_MODEL": "x.keras"}}}}))
    with pytest.raises(EmolibError, match=r"bad\.yaml: notebooks\.emotion_cnn\.parameters sets \['OUT_MODEL'\]"):
        retrain.load_config(bad)
    bad.write_text(yaml.safe_dump({"gate": {"face": {"mode": "higher"}}}))
    with pytest.raises(EmolibError, match=r"gate\.face\.mode must be max"):
        retrain.load_config(bad)
    bad.write_text(yaml.safe_dump({"notebooks": {"melody": {"paramters": {"EPOCHS": 1}}}}))
    with pytest.raises(EmolibError, match=r"unknown key\(s\) \['paramters'\] in notebooks.melody"):
        retrain.load_config(bad)
    bad.write_text(yaml.safe_dump({"gate": {"melody": {"metrics": "val.loss"}}}))
    with pytest.raises(EmolibError, match=r"unknown key\(s\) \['metrics'\] in gate.melody"):
        retrain.load_config(bad)
    bad.write_text(yaml.safe_dump({"gate": {"face": {"loader": "emolib.emotion:load_model"}}}))  # a module gone
    with pytest.raises(EmolibError, match=r"bad\.yaml: gate\.face\.loader 'emolib\.emotion:load_model' is not"):
        retrain.load_config(bad)
    with pytest.raises(EmolibError, match="retrain config not found"):
        retrain.load_config(tmp_path / "missing.yaml")


def test_the_old_and_new_spellings_of_validation_metrics_find_each_other():
    old_file, new_file = {"validation": {"macro_f1": 0.7}}, {"val": {"macro_f1": 0.8}}
    for key in ("val.macro_f1", "validation.macro_f1"):  # a retrain.yaml of either spelling
        assert retrain.gate(new_file, old_file, {**FACE_RULE, "metric": key}).promote
        assert not retrain.gate(old_file, new_file, {**FACE_RULE, "metric": key}).promote


def test_a_second_retrain_while_one_runs_is_refused(world, capsys):
    config = world["config"]()
    with retrain.retrain_lock(world["models"]):
        assert cli.main(["retrain", "--config", str(config)]) == 1
    assert "another retrain is running (pid" in capsys.readouterr().err
    assert not (world["root"] / "runs").exists()


# --------------------------------------------------------------------------- killed runs
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_retrain_killed_mid_way_leaves_the_current_models_intact(world, sig):
    models = world["models"]
    before = _snapshot(models)
    flag = world["root"] / "started"
    config = world["config"](face={"VAL_MACRO_F1": 0.99, "SLEEP": 60, "STARTED_FLAG": str(flag)})
    proc = subprocess.Popen([sys.executable, "-m", "emolib", "retrain", "--config", str(config)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    kernels = []
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the notebook never started"
            time.sleep(0.1)
        kernels = _children(proc.pid)
        assert kernels, "the running notebook's kernel process was not found: the orphan check would check nothing"
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == (143 if sig == signal.SIGTERM else -signal.SIGKILL), err
    assert _snapshot(models) == before
    assert _first_weight(models / "face" / "model.keras") == 0.25
    if sig == signal.SIGTERM:
        assert "interrupted (SIGTERM)" in err
        (record,) = retrain.read_history(world["root"] / "runs" / "history.jsonl")
        assert record["status"] == "interrupted" and record["models"] == []
        _wait_gone(kernels)  # the kernel was shut down, not orphaned
    else:
        _wait_gone(kernels)  # ipykernel exits when its parent dies
        # the lock died with the process: the next run goes ahead and promotes normally
        record = retrain.retrain(world["config"](face={"VAL_MACRO_F1": 0.99}, melody_enabled=False))
        assert [(m["name"], m["promoted"]) for m in record["models"]] == [("face", True)]
        killed, finished = retrain.read_history(world["root"] / "runs" / "history.jsonl")
        assert killed["status"] == "killed" and finished["status"] == "ok"
        assert [(n["step"], n["status"]) for n in killed["notebooks"]] == [("emotion_cnn", "running")]


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid``, read from /proc (errors fail the test: an empty list must mean none)."""
    if not Path("/proc/self/stat").is_file():
        pytest.skip("needs Linux /proc to find the kernel processes")
    parent_of = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):  # a process that exited while we looked
            continue
        parent_of[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], {pid}
    while frontier:
        frontier = {p for p, pp in parent_of.items() if pp in frontier}
        found.extend(sorted(frontier))
    return found


def _wait_gone(pids: list[int], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.2)
    for p in alive:  # never leave a stray kernel behind, but fail: it should have gone by itself
        os.kill(p, signal.SIGKILL)
    assert not alive, f"kernel process(es) {alive} outlived the retrain"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (dead, not yet reaped) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_the_orphan_check_catches_a_process_that_outlives_its_parent():
    """_children finds a grandchild; _wait_gone fails (and kills it) when it does not exit."""
    outer = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
                              "time.sleep(60)"])
    try:
        deadline = time.monotonic() + 20
        while len(_children(outer.pid)) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        (grandchild,) = _children(outer.pid)
        outer.kill()
        outer.wait()
        with pytest.raises(AssertionError, match=f"\\[{grandchild}\\] outlived the retrain"):
            _wait_gone([grandchild], timeout=0.5)
        assert not _alive(grandchild) or _wait_gone([grandchild], timeout=5) is None
    finally:
        if outer.poll() is None:
            outer.kill()
            outer.wait()


# --------------------------------------------------------------------------- the shipped example config
def test_the_example_config_parses_and_uses_the_package_models():
    cfg = retrain.load_config(REPO_ROOT / "retrain.yaml")
    from emolib.paths import MODELS_DIR

    assert cfg.models_dir == MODELS_DIR
    assert cfg.runs_dir == REPO_ROOT / "runs" and cfg.history == REPO_ROOT / "runs" / "history.jsonl"
    assert cfg.gates["face"]["mode"] == "max" and cfg.gates["melody"]["mode"] == "min"
    assert [cfg.steps[s]["notebook"].name for s in retrain.STEPS] == [
        "02_mp3_to_midi.ipynb", "01_emotion_cnn.ipynb", "03_train_rnn_per_emotion.ipynb"]
    assert cfg.steps["emotion_cnn"]["notebook"] == REPO_ROOT / "notebooks" / "01_emotion_cnn.ipynb"
    assert not cfg.steps["mp3_to_midi"]["enabled"]  # no MP3 folder configured
    smoke = retrain.load_config(REPO_ROOT / "examples" / "retrain.smoke.yaml")
    assert smoke.models_dir == REPO_ROOT / "runs" / "smoke-models"  # never the shipped models
    assert smoke.steps["melody"]["notebook"] == cfg.steps["melody"]["notebook"]


def test_the_cron_example_runs_the_retrain_weekly():
    lines = [ln for ln in (REPO_ROOT / "examples" / "retrain.cron").read_text().splitlines()
             if ln.strip() and not ln.startswith("#") and "=" not in ln.split()[0]]
    assert len(lines) == 1
    fields = lines[0].split(None, 5)
    assert all(re.fullmatch(r"[0-9*/,\-]+", f) for f in fields[:5]), fields
    assert "emolib retrain --config retrain.yaml" in fields[5] and "%" not in fields[5]


def test_the_github_workflow_is_scheduled_dispatchable_and_uploads_the_run_folder():
    wf = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "retrain.yml").read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as true
    assert on["schedule"][0]["cron"].count(" ") == 4 and "workflow_dispatch" in on
    steps = wf["jobs"]["retrain"]["steps"]
    runs = " ".join(s.get("run", "") for s in steps)
    assert "make retrain" in runs and "make install" in runs and "--check" in runs
    assert "${{" not in runs  # inputs reach scripts through env, never pasted into them
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()" and "runs/" in upload["with"]["path"]
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^retrain: install\n\t\$\(PY\) -m emolib retrain --config \$\(RETRAIN_CONFIG\)", makefile, re.M)


def test_a_missing_data_folder_fails_before_any_notebook_runs(world):
    import shutil

    shutil.rmtree(world["data"] / "music" / "midi")
    with pytest.raises(EmolibError,
                       match=r"music/midi: data folder for 03_train_rnn_per_emotion.ipynb \(MIDI_DIR\) not found"):
        retrain.retrain(world["config"]())
    (record,) = retrain.read_history(world["root"] / "runs" / "history.jsonl")
    assert record["notebooks"] == []
