"""emolib.model_card: the face card comes from its template and the numbers in metrics.json."""
from __future__ import annotations

import json

from emolib import model_card
from emolib.face_model import DEFAULT_MODEL_DIR


def _shipped_metrics() -> dict:
    return json.loads((DEFAULT_MODEL_DIR / "metrics.json").read_text())


def test_the_card_describes_the_loss_the_run_used():
    metrics = _shipped_metrics()
    assert metrics["parameters"]["label_smoothing"] == 0
    assert model_card.loss_description(metrics["parameters"]) == "cross-entropy, class-weighted"
    other = {**metrics, "parameters": {**metrics["parameters"], "label_smoothing": 0.1, "balance": "sampling"}}
    card = model_card.face_model_card(other)
    assert "- Loss: cross-entropy, label smoothing 0.1, classes sampled equally; AdamW" in card


def test_the_shipped_card_is_the_template_filled_from_metrics_plus_its_notes():
    metrics = _shipped_metrics()
    card = model_card.face_model_card(metrics)
    assert (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text().startswith(card)
    assert "${" not in card and metrics["command"] in card
    assert metrics["onnx_export"]["command"] in card  # how model.onnx was made


def test_write_model_card_writes_beside_metrics(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(_shipped_metrics()))
    path = model_card.write_model_card(tmp_path, notes="NOTES")
    assert path.read_text().endswith("NOTES") and not list(tmp_path.glob(".MODEL_CARD.*"))
