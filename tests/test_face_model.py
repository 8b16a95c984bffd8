"""emolib.face_model: the CNN's shape, ONNX export and loading, prediction, evaluation, the shipped model."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from emolib import FACE_CLASSES, EmolibError, face_model
from emolib.face_data import load_faces
from emolib.paths import REPO_ROOT
from tests.conftest import run_cli
from tests.facedata import draw_face, make_face_tree

CLASSES = ("angry", "happy", "sad")


def test_architecture_is_5_conv_blocks_and_5_dense_layers():
    model = face_model.build_face_cnn(FACE_CLASSES)
    names = [layer.name for layer in model.layers]
    assert sum(n.endswith("_conv1") for n in names) == 5 and sum(n.endswith("_pool") for n in names) == 5
    assert sum(n.startswith("fc") and n[2:].isdigit() for n in names) == 5
    # By default the first block (48x48) has one convolution and the four smaller ones two each.
    assert [n for n in names if n.endswith("_conv2")] == [f"block{b}_conv2" for b in range(2, 6)]
    assert sum(type(layer).__name__ == "BatchNormalization" for layer in model.layers) == 9 + 5
    assert model.output_shape == (None, 4)


def test_convolutions_per_block_can_differ_per_block():
    model = face_model.build_face_cnn(FACE_CLASSES, conv_widths=(8, 8, 8, 8, 8), dense_widths=(8,) * 5,
                                   convs_per_block=(1, 2, 2, 2, 3))
    convs = [layer.name for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert convs[:3] == ["block1_conv1", "block2_conv1", "block2_conv2"] and convs[-1] == "block5_conv3"
    assert len(convs) == 10 and sum(n.endswith("_pool") for n in (layer.name for layer in model.layers)) == 5
    for bad in ((1, 2, 2), (1, 2, 0, 2, 2)):
        with pytest.raises(EmolibError, match="convs_per_block"):
            face_model.build_face_cnn(FACE_CLASSES, convs_per_block=bad)


def test_loading_a_non_model_is_a_named_error(tmp_path):
    bad = tmp_path / "m.keras"
    bad.write_bytes(b"junk")
    with pytest.raises(EmolibError, match=r"m\.keras"):
        face_model.load_keras_model(bad)
    with pytest.raises(EmolibError, match="not found"):
        face_model.load_keras_model(tmp_path / "none.keras")

def _tiny_model(classes=CLASSES):
    import keras

    keras.utils.set_random_seed(0)
    return face_model.build_face_cnn(classes, conv_widths=(4, 4, 4, 4, 4), dense_widths=(8, 8, 8, 8, 8),
                                     bn_momentum=0.5)


def test_onnx_export_gives_the_keras_probabilities(tmp_path):
    model = _tiny_model()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 48, 48, 1)).astype("float32")
    model(x, training=True)  # move the batch-norm statistics off their initial values
    path = face_model.export_onnx(model, tmp_path / "m.onnx")
    onnx = face_model.load_face_model(path)
    assert onnx.classes == CLASSES and onnx.tta_flip is True and onnx.keras_model is None
    crops = x[..., 0].astype(np.uint8)
    want = face_model.predict_probabilities(lambda b: model(b, training=False), crops, tta_flip=True)
    assert np.abs(onnx.predict(crops) - want).max() < 1e-4
    assert not list(tmp_path.glob(".m.*"))  # written atomically: no temp file left


def test_a_bad_onnx_file_is_a_named_error(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(EmolibError, match=r"broken\.onnx") as err:
        face_model.load_face_model(bad)
    assert "not a loadable ONNX face model" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmolibError, match=r"not found.*faces export"):
        face_model.load_face_model(tmp_path / "empty")  # a folder without model.onnx


@pytest.mark.data
def test_shipped_onnx_equals_shipped_keras_on_the_fer_test_split(shared):
    test = load_faces(shared / "fer2013", "test", FACE_CLASSES)
    onnx = face_model.load_face_model().predict(test.x)
    keras_probs = face_model.load_keras_model().predict(test.x)
    assert len(test) > 2000 and np.abs(onnx - keras_probs).max() < 1e-4


def test_photo_to_music_never_imports_tensorflow(tmp_path):
    """`emolib image2music` on a photo: the ONNX model only; neither TensorFlow nor Keras is imported."""
    script = ("import sys, runpy; photo, out = sys.argv[1:3]\n"
              "sys.argv = ['emolib', 'image2music', photo, '--out', out, '--seconds', '5', '--seed', '0']\n"
              "try:\n    runpy.run_module('emolib', run_name='__main__')\n"
              "except SystemExit as e:\n    assert not e.code, e.code\n"
              "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx'))\n"
              "print('HEAVY', heavy)")
    photo = REPO_ROOT / "emolib" / "assets" / "astronaut.jpg"
    res = subprocess.run([sys.executable, "-c", script, str(photo), str(tmp_path)], capture_output=True, text=True,
                         timeout=300, cwd=REPO_ROOT)
    assert res.returncode == 0, res.stderr
    assert "HEAVY []" in res.stdout, res.stdout[-500:]
    assert (tmp_path / "astronaut.mid").is_file() and (tmp_path / "astronaut.wav").is_file()


# ---------------------------------------------------------------- the shipped model
def test_shipped_model_loads_predicts_and_meets_its_card():
    path = face_model.DEFAULT_MODEL
    assert path.is_file() and path.stat().st_size <= 15 * 1024 * 1024
    assert face_model.DEFAULT_ONNX.is_file() and face_model.DEFAULT_ONNX.stat().st_size <= 15 * 1024 * 1024
    model = face_model.load_face_model()
    assert model.classes == FACE_CLASSES and face_model.load_face_model() is model
    crops = np.stack([np.full((48, 48), 128, np.uint8), draw_face(size=48, cx=24, cy=25, scale=0.18)[:, :, 0]])
    probs = model.predict(crops)
    assert probs.shape == (2, 4) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    rows = model.predict_photo(draw_face())
    assert len(rows) == 1 and rows[0]["face_found"] and rows[0]["emotion"] in FACE_CLASSES
    metrics = json.loads((path.parent / "metrics.json").read_text())
    assert metrics["classes"] == list(FACE_CLASSES) and metrics["scored_on"] == "test"
    assert "emolib faces train" in metrics["command"]
    assert (path.parent / "MODEL_CARD.md").read_text().count(metrics["command"]) >= 1


@pytest.mark.data
def test_shipped_model_on_a_sample_of_the_real_test_split(shared):
    res = face_model.evaluate_dir(shared / "fer2013", face_model.load_face_model(), split="test", limit_per_class=120,
                                  seed=0)
    assert res["n"] == 480
    metrics = json.loads((face_model.DEFAULT_MODEL.parent / "metrics.json").read_text())
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


def test_without_the_exporter_export_and_training_stop_with_a_clear_error(tmp_path, monkeypatch):
    from emolib import face_train

    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # as if the `train` extra were not installed
    with pytest.raises(EmolibError, match=r"tf2onnx.*emolib\[train\]"):
        face_model.export_onnx(face_model.build_face_cnn(CLASSES), tmp_path / "m.onnx")
    with pytest.raises(EmolibError, match=r"emolib\[train\]"):  # before any training happens
        face_train.train(tmp_path / "no-data-needed", tmp_path / "m.keras")
    assert not list(tmp_path.iterdir())


def test_cli_export_records_how_the_onnx_was_made_for_the_card(tmp_path):
    from emolib.model_card import _onnx_line

    folder = tmp_path / "face"
    folder.mkdir()
    face_model.build_face_cnn(CLASSES).save(folder / "model.keras")
    (folder / "metrics.json").write_text(json.dumps({"classes": list(CLASSES), "kept": "yes"}))
    result = run_cli("faces", "export", str(folder))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["kept"] == "yes" and metrics["onnx_export"]["file"] == "model.onnx"
    assert metrics["onnx_export"]["command"] == f"emolib faces export {folder}"
    assert face_model.load_face_model(folder).classes == CLASSES
    assert "made by `emolib faces export" in _onnx_line(metrics)
    assert "made by `emolib faces train" in _onnx_line({"onnx": "model.onnx", "command": "emolib faces train x"})
