"""emolib.face_train: the recipe, the training loop learns, callbacks, mixed precision, weight averaging, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from emolib import EmolibError, face_model
from emolib.face_callbacks import recompute_batchnorm
from emolib.face_data import load_faces, stratified_split
from emolib.face_train import FaceTrainConfig, config_from
from emolib.face_train import train as train_with
from emolib.runs import get_strategy
from tests.conftest import run_cli
from tests.facedata import draw_face, make_face_tree

CLASSES = ("angry", "happy", "sad")
TINY = dict(conv_widths=(8, 8, 16, 16, 16), dense_widths=(32, 32, 32, 32, 32), learning_rate=5e-3,
            conv_dropout=0.0, dense_dropout=0.1, bn_momentum=0.8, progress=False)


def train(data, out, progress: bool = False, **recipe):
    """face_train.train with the recipe given as keywords (as the tests used to call it)."""
    return train_with(data, out, FaceTrainConfig(**recipe), progress=progress)


def test_the_recipe_is_frozen_and_checked():
    config = FaceTrainConfig(conv_widths=[8, 8], convs_per_block=[2], classes=["happy", "sad"])
    assert config.conv_widths == (8, 8) and config.convs_per_block == 2 and config.classes == ("happy", "sad")
    with pytest.raises(AttributeError):
        config.epochs = 3  # type: ignore[misc]
    assert config_from(config, epochs=3).epochs == 3 and config.epochs == 40
    with pytest.raises(EmolibError, match="unknown face training setting"):
        config_from(config, epoch=3)
    with pytest.raises(EmolibError, match="unknown monitor"):
        FaceTrainConfig(monitor="accuracy")
    assert json.dumps(config.as_json())  # stored in metrics.json as is


def test_strategy_names():
    import tensorflow as tf

    assert isinstance(get_strategy("mirrored"), tf.distribute.MirroredStrategy)
    assert get_strategy("default") is tf.distribute.get_strategy()
    with pytest.raises(EmolibError, match="unknown strategy"):
        get_strategy("quantum")


def test_training_learns_saves_and_reloads(tmp_path):
    data = make_face_tree(tmp_path / "data", CLASSES, n_train=80, n_test=30, seed=0)
    out = tmp_path / "run" / "model.keras"
    metrics = train(data, out, classes=CLASSES, epochs=6, seed=0, batch_size=32, patience=0, **TINY)
    # Chance is 1/3: the net must have learned the class patterns from 216 images.
    assert metrics["scored_on"] == "test" and metrics["test"]["n"] == 90
    assert metrics["accuracy"] > 0.6, metrics["confusion_matrix"]
    for name in ("model.keras", "model.onnx", "metrics.json", "curves.png", "confusion.png", "MODEL_CARD.md"):
        assert (out.parent / name).stat().st_size > 0
    saved = json.loads((out.parent / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "recall", "precision", "confusion_matrix", "epochs_run", "seconds_per_epoch",
                "seed", "data", "architecture", "command"):
        assert key in saved
    assert saved["data"]["train"] == {"angry": 72, "happy": 72, "sad": 72}
    assert saved["data"]["val"] == {"angry": 8, "happy": 8, "sad": 8}
    assert len(saved["history"]["val_macro_f1"]) == saved["epochs_run"] == 6
    assert np.array(saved["confusion_matrix"]).sum() == 90
    assert not list(out.parent.glob(".model.*"))  # no temp file left behind

    model = face_model.load_keras_model(out)
    assert model.classes == CLASSES and face_model.load_keras_model(out) is model  # cached
    test = load_faces(data, "test", CLASSES)
    probs = model.predict(test.x)
    assert probs.shape == (90, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert np.isclose((probs.argmax(1) == test.y).mean(), metrics["accuracy"])
    # evaluate_dir scores the same faces the same way, from the folder tree and the zips alike.
    res = face_model.evaluate_dir(data / "test", model)
    assert res["n"] == 90 and np.isclose(res["accuracy"], metrics["accuracy"])
    assert np.isclose(face_model.evaluate_dir(data, model, split="test")["accuracy"], metrics["accuracy"])

    rows = model.predict_photo(draw_face(), all_faces=True)
    assert len(rows) == 1 and rows[0]["face_found"] is True
    assert set(rows[0]["probabilities"]) == set(CLASSES) and rows[0]["emotion"] in CLASSES
    assert abs(sum(rows[0]["probabilities"].values()) - 1) < 1e-5


def test_mixed_precision_training_learns_and_saves_a_float32_model(tmp_path):
    import keras

    data = make_face_tree(tmp_path / "data", CLASSES, n_train=80, n_test=30, seed=1)
    out = tmp_path / "run" / "model.keras"
    metrics = train(data, out, classes=CLASSES, epochs=6, seed=0, batch_size=32, patience=0,
                            precision="mixed_bfloat16", **TINY)
    assert metrics["accuracy"] > 0.6, metrics["confusion_matrix"]
    assert keras.mixed_precision.global_policy().name == "float32"  # the caller's policy is back
    model = face_model.load_keras_model(out)
    assert {layer.dtype_policy.name for layer in model.keras_model.layers} == {"float32"}
    assert all(w.dtype == np.float32 for w in model.keras_model.get_weights())
    # The recorded test score is the saved float32 model's: prediction matches it exactly.
    test = load_faces(data, "test", CLASSES)
    assert np.isclose((model.predict(test.x).argmax(1) == test.y).mean(), metrics["accuracy"])
    with pytest.raises(EmolibError, match="unknown precision 'half'"):
        train(data, tmp_path / "x.keras", classes=CLASSES, epochs=1, precision="half", **TINY)


def test_recomputed_batchnorm_statistics_are_the_mean_over_batches():
    import keras

    keras.utils.set_random_seed(0)
    model = face_model.build_face_cnn(CLASSES, conv_widths=(4, 4, 4, 4, 4), dense_widths=(4, 4, 4, 4, 4))
    norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    norm.moving_mean.assign(np.full(norm.moving_mean.shape, 50.0, "float32"))  # stale statistics
    x = np.random.default_rng(0).integers(0, 256, (100, 48, 48), dtype=np.uint8)
    recompute_batchnorm(model, x, batch_size=32)  # batches of 32, 32, 32, 4
    feed = keras.Model(model.input, norm.input)
    batch_means = [np.asarray(feed(x[i:i + 32, :, :, None].astype("float32"))).mean(axis=(0, 1, 2))
                   for i in range(0, 100, 32)]
    assert np.allclose(norm.moving_mean.numpy(), np.mean(batch_means, axis=0), rtol=1e-4, atol=1e-5)
    assert norm.momentum == 0.99  # the layer's own momentum is restored


def test_weight_averaging_keeps_the_average_unless_validation_says_it_is_worse(tmp_path):
    data = make_face_tree(tmp_path / "data", CLASSES, n_train=80, n_test=30, seed=2)
    out = tmp_path / "run" / "model.keras"
    metrics = train(data, out, classes=CLASSES, epochs=6, seed=0, batch_size=32, patience=0, average_last=3,
                            **TINY)
    avg = metrics["weight_average"]
    assert avg["epochs"] == [4, 5, 6] and metrics["accuracy"] > 0.6
    best_f1 = metrics["history"]["val_macro_f1"][metrics["best_epoch"] - 1]
    window = metrics["history"]["val_macro_f1"][3:6]
    mean, sd = np.mean(window), np.std(window, ddof=1)
    assert np.isclose(avg["epochs_val_mean"], mean) and np.isclose(avg["epochs_val_sd"], sd)
    assert avg["chosen"] == (avg["val_macro_f1"] >= mean and avg["val_macro_f1"] >= best_f1 - sd)
    assert set(avg["test_of_the_one_not_kept"]) == {"accuracy", "macro_f1", "recall"}
    # The saved model is the one kept: it scores on validation what was recorded for it.
    full = load_faces(data, "train", CLASSES)
    val = full.subset(stratified_split(full.y, 0.1, 0)[1])
    saved = face_model.load_keras_model(out).keras_model
    f1 = face_model.score(val.y, face_model.predict_probabilities(lambda x: saved(x, training=False), val.x, False),
                          CLASSES)["macro_f1"]
    assert np.isclose(f1, avg["val_macro_f1"] if avg["chosen"] else best_f1, atol=1e-6)
    with pytest.raises(EmolibError, match="average_last must be 0"):
        train(data, tmp_path / "x.keras", classes=CLASSES, epochs=2, average_last=1, **TINY)


def test_cli_train_records_its_exact_command(tmp_path):
    data = make_face_tree(tmp_path / "d", CLASSES, n_train=20, n_test=4, as_zips=True)
    out = tmp_path / "m" / "model.keras"
    argv = ["faces", "train", "--data", str(data), "--out", str(out), "--classes", *CLASSES, "--epochs", "2",
            "--batch-size", "16", "--conv-widths", "4", "4", "4", "4", "4", "--dense-widths", "4", "4", "4", "4", "4",
            "--convs-per-block", "1", "1", "1", "1", "2", "--weight-decay", "0.01", "--label-smoothing", "0.05",
            "--precision", "mixed_bfloat16", "--average-last", "2"]
    res = run_cli(*argv)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["classes"] == list(CLASSES) and summary["test"]["n"] == 12
    metrics = json.loads((out.parent / "metrics.json").read_text())
    assert metrics["command"] == "emolib " + " ".join(argv)
    assert metrics["architecture"]["conv_widths"] == [4] * 5 and out.is_file()
    assert metrics["architecture"]["convs_per_block"] == [1, 1, 1, 1, 2]
    assert metrics["parameters"]["weight_decay"] == 0.01 and metrics["parameters"]["label_smoothing"] == 0.05
    assert metrics["parameters"]["precision"] == "mixed_bfloat16" and metrics["parameters"]["average_last"] == 2
    assert metrics["weight_average"]["epochs"] == [1, 2] and "weights averaged over epochs 1-2" in res.stderr
    assert "epoch 1/2" in res.stderr  # progress goes to stderr, JSON to stdout
    assert metrics["config"]["weight_decay"] == 0.01 and metrics["config"]["conv_widths"] == [4] * 5
    assert out.with_suffix(".onnx").is_file()
    # The ONNX file the run wrote is what photo -> music loads from that folder: same probabilities.
    faces = load_faces(data, "test", CLASSES)
    onnx = face_model.load_face_model(out.parent).predict(faces.x)
    assert np.abs(onnx - face_model.load_keras_model(out).predict(faces.x)).max() < 1e-4
