"""emolib.emotion: data loading, the training loop actually learns, saving/loading, prediction, evaluation."""
from __future__ import annotations

import json

import numpy as np
import pytest

from emolib import FACE_CLASSES, EmolibError
from emolib import emotion
from tests.conftest import run_cli
from tests.facedata import draw_face, make_face_tree

CLASSES = ("angry", "happy", "sad")
TINY = dict(conv_widths=(8, 8, 16, 16, 16), dense_widths=(32, 32, 32, 32, 32), learning_rate=5e-3,
            conv_dropout=0.0, dense_dropout=0.1, bn_momentum=0.8, progress=False)


def test_stratified_split_is_seeded_and_keeps_every_class():
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    keep, held = emotion.stratified_split(y, 0.1, seed=3)
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(100))
    assert np.bincount(y[held]).tolist() == [5, 3, 2]
    assert np.array_equal(held, emotion.stratified_split(y, 0.1, seed=3)[1])
    assert not np.array_equal(held, emotion.stratified_split(y, 0.1, seed=4)[1])


def test_class_weights_balance_the_loss():
    y = np.array([0] * 60 + [1] * 20 + [2] * 20)
    w = emotion.class_weights(y, 3)
    totals = [w[k] * np.sum(y == k) for k in range(3)]
    assert np.allclose(totals, totals[0]) and w[1] > w[0]


def test_load_faces_from_folders_and_from_fer_style_zips(tmp_path):
    folders = make_face_tree(tmp_path / "tree", CLASSES, n_train=6, n_test=2)
    zips = make_face_tree(tmp_path / "zips", CLASSES, n_train=6, n_test=2, as_zips=True)
    a = emotion.load_faces(folders, "train", CLASSES)
    b = emotion.load_faces(zips, "train", CLASSES)
    assert a.x.shape == b.x.shape == (18, 48, 48) and a.x.dtype == np.uint8
    assert a.counts() == b.counts() == {"angry": 6, "happy": 6, "sad": 6}
    assert np.array_equal(a.x, b.x)  # same bytes, same preprocessing
    assert emotion.load_faces(zips, "test", CLASSES).counts() == {"angry": 2, "happy": 2, "sad": 2}
    limited = emotion.load_faces(folders, "train", CLASSES, limit_per_class=4, seed=1)
    assert limited.counts() == {"angry": 4, "happy": 4, "sad": 4}
    assert limited.names == emotion.load_faces(folders, "train", CLASSES, limit_per_class=4, seed=1).names
    with pytest.raises(EmolibError, match="no images for class"):
        emotion.load_faces(folders, "train", ("angry", "neutral"))
    with pytest.raises(EmolibError, match="unknown class"):
        emotion.load_faces(folders, "train", ("angry", "bored"))


def test_a_bad_training_image_is_named(tmp_path):
    root = make_face_tree(tmp_path / "tree", CLASSES, n_train=3, n_test=1)
    bad = root / "train" / "sad" / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(EmolibError, match="broken.jpg"):
        emotion.load_faces(root, "train", CLASSES)
    assert len(emotion.load_faces(root, "train", CLASSES, strict=False)) == 9


def test_strategy_names():
    import tensorflow as tf

    assert isinstance(emotion.get_strategy("mirrored"), tf.distribute.MirroredStrategy)
    assert emotion.get_strategy("default") is tf.distribute.get_strategy()
    with pytest.raises(EmolibError, match="unknown strategy"):
        emotion.get_strategy("quantum")


def test_architecture_is_5_conv_blocks_and_5_dense_layers():
    model = emotion.build_model(FACE_CLASSES)
    names = [layer.name for layer in model.layers]
    assert sum(n.endswith("_conv1") for n in names) == 5 and sum(n.endswith("_pool") for n in names) == 5
    assert sum(n.startswith("fc") and n[2:].isdigit() for n in names) == 5
    # By default the first block (48x48) has one convolution and the four smaller ones two each.
    assert [n for n in names if n.endswith("_conv2")] == [f"block{b}_conv2" for b in range(2, 6)]
    assert sum(type(layer).__name__ == "BatchNormalization" for layer in model.layers) == 9 + 5
    assert model.output_shape == (None, 4)


def test_convolutions_per_block_can_differ_per_block():
    model = emotion.build_model(FACE_CLASSES, conv_widths=(8, 8, 8, 8, 8), dense_widths=(8,) * 5,
                                convs_per_block=(1, 2, 2, 2, 3))
    convs = [layer.name for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert convs[:3] == ["block1_conv1", "block2_conv1", "block2_conv2"] and convs[-1] == "block5_conv3"
    assert len(convs) == 10 and sum(n.endswith("_pool") for n in (layer.name for layer in model.layers)) == 5
    for bad in ((1, 2, 2), (1, 2, 0, 2, 2)):
        with pytest.raises(EmolibError, match="convs_per_block"):
            emotion.build_model(FACE_CLASSES, convs_per_block=bad)


def test_training_learns_saves_and_reloads(tmp_path):
    data = make_face_tree(tmp_path / "data", CLASSES, n_train=80, n_test=30, seed=0)
    out = tmp_path / "run" / "model.keras"
    metrics = emotion.train(data, out, classes=CLASSES, epochs=6, seed=0, batch_size=32, patience=0, **TINY)
    # Chance is 1/3: the net must have learned the class patterns from 216 images.
    assert metrics["scored_on"] == "test" and metrics["test"]["n"] == 90
    assert metrics["accuracy"] > 0.6, metrics["confusion_matrix"]
    for name in ("model.keras", "metrics.json", "curves.png", "confusion.png", "MODEL_CARD.md"):
        assert (out.parent / name).stat().st_size > 0
    saved = json.loads((out.parent / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "recall", "precision", "confusion_matrix", "epochs_run", "seconds_per_epoch",
                "seed", "data", "architecture", "command"):
        assert key in saved
    assert saved["data"]["train"] == {"angry": 72, "happy": 72, "sad": 72}
    assert saved["data"]["validation"] == {"angry": 8, "happy": 8, "sad": 8}
    assert len(saved["history"]["val_macro_f1"]) == saved["epochs_run"] == 6
    assert np.array(saved["confusion_matrix"]).sum() == 90
    assert not list(out.parent.glob(".model.*"))  # no temp file left behind

    model = emotion.load_model(out)
    assert model.classes == CLASSES and emotion.load_model(out) is model  # cached
    test = emotion.load_faces(data, "test", CLASSES)
    probs = model.predict(test.x)
    assert probs.shape == (90, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert np.isclose((probs.argmax(1) == test.y).mean(), metrics["accuracy"])
    # evaluate_dir scores the same faces the same way, from the folder tree and the zips alike.
    res = emotion.evaluate_dir(data / "test", model)
    assert res["n"] == 90 and np.isclose(res["accuracy"], metrics["accuracy"])
    assert np.isclose(emotion.evaluate_dir(data, model, split="test")["accuracy"], metrics["accuracy"])

    rows = model.predict_photo(draw_face(), all_faces=True)
    assert len(rows) == 1 and rows[0]["face_found"] is True
    assert set(rows[0]["probabilities"]) == set(CLASSES) and rows[0]["emotion"] in CLASSES
    assert abs(sum(rows[0]["probabilities"].values()) - 1) < 1e-5


def test_mixed_precision_training_learns_and_saves_a_float32_model(tmp_path):
    import keras

    data = make_face_tree(tmp_path / "data", CLASSES, n_train=80, n_test=30, seed=1)
    out = tmp_path / "run" / "model.keras"
    metrics = emotion.train(data, out, classes=CLASSES, epochs=6, seed=0, batch_size=32, patience=0,
                            precision="mixed_bfloat16", **TINY)
    assert metrics["accuracy"] > 0.6, metrics["confusion_matrix"]
    assert keras.mixed_precision.global_policy().name == "float32"  # the caller's policy is back
    model = emotion.load_model(out)
    assert {layer.dtype_policy.name for layer in model.keras_model.layers} == {"float32"}
    assert all(w.dtype == np.float32 for w in model.keras_model.get_weights())
    # The recorded test score is the saved float32 model's: prediction matches it exactly.
    test = emotion.load_faces(data, "test", CLASSES)
    assert np.isclose((model.predict(test.x).argmax(1) == test.y).mean(), metrics["accuracy"])
    with pytest.raises(EmolibError, match="unknown precision 'half'"):
        emotion.train(data, tmp_path / "x.keras", classes=CLASSES, epochs=1, precision="half", **TINY)


def test_recomputed_batchnorm_statistics_are_the_mean_over_batches():
    import keras

    keras.utils.set_random_seed(0)
    model = emotion.build_model(CLASSES, conv_widths=(4, 4, 4, 4, 4), dense_widths=(4, 4, 4, 4, 4))
    norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    norm.moving_mean.assign(np.full(norm.moving_mean.shape, 50.0, "float32"))  # stale statistics
    x = np.random.default_rng(0).integers(0, 256, (100, 48, 48), dtype=np.uint8)
    emotion._recompute_batchnorm(model, x, batch_size=32)  # batches of 32, 32, 32, 4
    feed = keras.Model(model.input, norm.input)
    batch_means = [np.asarray(feed(x[i:i + 32, :, :, None].astype("float32"))).mean(axis=(0, 1, 2))
                   for i in range(0, 100, 32)]
    assert np.allclose(norm.moving_mean.numpy(), np.mean(batch_means, axis=0), rtol=1e-4, atol=1e-5)
    assert norm.momentum == 0.99  # the layer's own momentum is restored


def test_weight_averaging_keeps_the_average_unless_validation_says_it_is_worse(tmp_path):
    data = make_face_tree(tmp_path / "data", CLASSES, n_train=80, n_test=30, seed=2)
    out = tmp_path / "run" / "model.keras"
    metrics = emotion.train(data, out, classes=CLASSES, epochs=6, seed=0, batch_size=32, patience=0, average_last=3,
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
    full = emotion.load_faces(data, "train", CLASSES)
    val = full.subset(emotion.stratified_split(full.y, 0.1, 0)[1])
    saved = emotion.load_model(out).keras_model
    f1 = emotion.score(val.y, emotion._predict_array(saved, val.x, tta_flip=False), CLASSES)["macro_f1"]
    assert np.isclose(f1, avg["val_macro_f1"] if avg["chosen"] else best_f1, atol=1e-6)
    with pytest.raises(EmolibError, match="average_last must be 0"):
        emotion.train(data, tmp_path / "x.keras", classes=CLASSES, epochs=2, average_last=1, **TINY)


def test_loading_a_non_model_is_a_named_error(tmp_path):
    bad = tmp_path / "m.keras"
    bad.write_bytes(b"junk")
    with pytest.raises(EmolibError, match="m.keras"):
        emotion.load_model(bad)
    with pytest.raises(EmolibError, match="not found"):
        emotion.load_model(tmp_path / "none.keras")


# ---------------------------------------------------------------- the shipped model
def test_shipped_model_loads_predicts_and_meets_its_card():
    path = emotion.DEFAULT_MODEL
    assert path.is_file() and path.stat().st_size <= 15 * 1024 * 1024
    model = emotion.load_model()
    assert model.classes == FACE_CLASSES and emotion.load_model() is model
    crops = np.stack([np.full((48, 48), 128, np.uint8), draw_face(size=48, cx=24, cy=25, scale=0.18)[:, :, 0]])
    probs = model.predict(crops)
    assert probs.shape == (2, 4) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    rows = model.predict_photo(draw_face())
    assert len(rows) == 1 and rows[0]["face_found"] and rows[0]["emotion"] in FACE_CLASSES
    metrics = json.loads((path.parent / "metrics.json").read_text())
    assert metrics["classes"] == list(FACE_CLASSES) and metrics["scored_on"] == "test"
    assert "emolib faces train" in metrics["command"]
    assert (path.parent / "MODEL_CARD.md").read_text().count(metrics["command"]) >= 1


def test_the_card_describes_the_loss_the_run_used():
    metrics = json.loads((emotion.DEFAULT_MODEL.parent / "metrics.json").read_text())
    assert metrics["parameters"]["label_smoothing"] == 0
    assert emotion.loss_description(metrics["parameters"]) == "cross-entropy, class-weighted"
    other = {**metrics, "parameters": {**metrics["parameters"], "label_smoothing": 0.1, "balance": "sampling"}}
    assert "- Loss: cross-entropy, label smoothing 0.1, classes sampled equally; AdamW" in emotion.model_card(other)


@pytest.mark.data
def test_shipped_model_on_a_sample_of_the_real_test_split(shared):
    res = emotion.evaluate_dir(shared / "fer2013", emotion.load_model(), split="test", limit_per_class=120, seed=0)
    assert res["n"] == 480
    metrics = json.loads((emotion.DEFAULT_MODEL.parent / "metrics.json").read_text())
    # A class-balanced 480-face sample agrees with the full test score recorded in metrics.json
    # (its accuracy estimates the mean per-class recall; standard error about 0.02).
    balanced = float(np.mean(list(metrics["test"]["recall"].values())))
    assert abs(res["accuracy"] - balanced) < 0.06
    assert min(res["recall"].values()) > 0.4


# ---------------------------------------------------------------- CLI
def test_cli_predict_and_errors(tmp_path):
    from PIL import Image

    photo = tmp_path / "face.png"
    Image.fromarray(draw_face()).save(photo)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    res = run_cli("faces", "predict", str(photo), str(bad))
    assert res.returncode == 1
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert rows[0]["image"] == str(photo) and rows[0]["face_found"] is True and len(rows[0]["box"]) == 4
    assert set(rows[0]["probabilities"]) == set(FACE_CLASSES) and rows[0]["emotion"] in FACE_CLASSES
    assert rows[1]["image"] == str(bad) and "empty file" in rows[1]["error"]
    assert f"{bad}: empty file" in res.stderr


def test_cli_evaluate_lists_ignored_folders(tmp_path):
    root = make_face_tree(tmp_path / "d", ("angry", "happy", "surprise"), n_train=0, n_test=3)
    (root / "test" / "notes").mkdir()
    (root / "test" / "happy" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    res = run_cli("faces", "evaluate", str(root / "test"))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["n"] == 6 and out["ignored"] == ["notes", "surprise"]
    assert set(out["recall"]) == set(FACE_CLASSES) and len(out["confusion_matrix"]) == 4
    assert out["missing_classes"] == ["neutral", "sad"]
    assert len(out["skipped"]) == 1 and "broken.jpg" in out["skipped"][0]


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
