import json

import pretty_midi

from tests.notebooks import cell_outputs_text, execute_notebook
from tests.test_melody import make_corpus


def test_notebook_03_trains_and_generates_per_emotion(tmp_path):
    midi = make_corpus(tmp_path / "midi", "happy", songs=3, seed=1)
    make_corpus(midi, "sad", songs=3, seed=2)
    out = tmp_path / "models"
    nb = execute_notebook("03_train_rnn_per_emotion.ipynb", {
        "MIDI_DIR": str(midi), "EMOTIONS": ["happy", "sad"], "SEQ_LENGTH": 8, "EPOCHS": 2, "SEED": 1,
        "OUT_DIR": str(out), "UNITS": 16, "BATCH_SIZE": 64, "SECONDS": 8.0}, tmp_path)
    for emotion in ("happy", "sad"):
        metrics = json.loads((out / emotion / "metrics.json").read_text())
        assert metrics["epochs_run"] == 2 and metrics["parameters"]["seq_length"] == 8
        assert metrics["data"]["files_used"] == 6 and "broken.mid" in json.dumps(metrics["data"]["skipped"])
        assert (out / emotion / "model.keras").is_file()
        piece = pretty_midi.PrettyMIDI(str(out / emotion / "sample.mid"))
        assert abs(piece.get_end_time() - 8.0) < 0.5
    text = cell_outputs_text(nb)
    assert "pitch top-1 accuracy" in text and "median step (s)" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 1 + 2 + 2  # distributions, curves per emotion, piano roll per emotion
    audio = [o for c in nb.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})
             and "<audio" in o["data"]["text/html"]]
    assert len(audio) == 2
