"""Notebook 01 runs end to end under papermill on a tiny dataset and leaves a working model behind."""
from __future__ import annotations

import json
import re

import numpy as np

from emolib.paths import REPO_ROOT
from tests.facedata import make_face_tree
from tests.notebooks import cell_outputs_text, execute_notebook


def test_notebook_01_trains_scores_and_predicts(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # the kernel imports this checkout's emolib
    classes = ["angry", "happy", "sad"]
    data = make_face_tree(tmp_path / "fer", classes, n_train=40, n_test=10, as_zips=True)
    out_model = tmp_path / "model" / "model.keras"
    nb = execute_notebook("01_emotion_cnn.ipynb", {
        "DATA_DIR": str(data), "CLASSES": classes, "EPOCHS": 2, "BATCH_SIZE": 32, "LIMIT_PER_CLASS": 30, "SEED": 1,
        "OUT_MODEL": str(out_model),
        "TRAIN_OPTIONS": {"conv_widths": [8, 8, 16, 16, 16], "dense_widths": [16, 16, 16, 16, 16], "progress": False},
    }, tmp_path)
    metrics = json.loads((out_model.parent / "metrics.json").read_text())
    assert metrics["classes"] == classes and metrics["data"]["train"] == {c: 27 for c in classes}
    assert metrics["test"]["n"] == 30 and metrics["epochs_run"] == 2 and metrics["seed"] == 1
    text = cell_outputs_text(nb)
    assert all(re.search(rf"{c}\s+30\b", text) for c in classes)  # the class-count table
    assert "'emotion':" in text and "'face_found': True" in text
    images = sum(1 for cell in nb.cells for out in cell.get("outputs", []) if "image/png" in out.get("data", {}))
    assert images >= 5  # counts, sample faces, curves, confusion matrix, photo with probability bars
    from emolib import face_model

    probs = face_model.load_face_model(out_model).predict(np.zeros((2, 48, 48), np.uint8))
    assert probs.shape == (2, 3)
