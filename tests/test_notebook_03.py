import json

import pretty_midi

from emolib import melody_train
from tests.mididata import SMALL, make_dataset
from tests.notebooks import cell_outputs_text, execute_notebook


def test_notebook_03_fine_tunes_from_a_base_compares_with_the_tutorial_and_generates(tmp_path):
    midi, pop = make_dataset(tmp_path, emotions=("happy", "sad"))
    base = tmp_path / "base"
    melody_train.pretrain(pop, midi, base, model_config=SMALL, emotions=("happy", "sad"),
                          config=melody_train.TrainConfig(
        epochs=1, minutes=None, seq_length=32, batch_size=8))
    out = tmp_path / "models"
    nb = execute_notebook("03_train_rnn_per_emotion.ipynb", {
        "MIDI_DIR": str(midi), "EMOTIONS": ["happy", "sad"], "BASE": str(base), "MINUTES": 0, "EPOCHS": 2,
        "SEQ_LENGTH": 32, "SEED": 1, "OUT_DIR": str(out), "TUTORIAL_EMOTION": "happy", "TUTORIAL_EPOCHS": 1,
        "SECONDS": 8.0}, tmp_path)
    for emotion in ("happy", "sad"):
        metrics = json.loads((out / emotion / "metrics.json").read_text())
        assert metrics["epochs_run"] == 2 and metrics["config"]["seq_length"] == 32
        assert metrics["init"] == str(base) and "broken.mid" in json.dumps(metrics["data"]["skipped"])
        assert (out / emotion / "generator.npz").is_file()
        piece = pretty_midi.PrettyMIDI(str(out / emotion / "sample.mid"))
        assert abs(piece.get_end_time() - 8.0) < 0.5
    text = cell_outputs_text(nb)
    assert "validation NLL per note" in text and "tutorial piece:" in text and "chord notes (step 0)" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 1 + 1 + 2 + 2 + 1  # distributions, tutorial roll, curves and rolls per emotion, side by side
    audio = [o for c in nb.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})
             and "<audio" in o["data"]["text/html"]]
    assert len(audio) == 3  # the tutorial piece and one per emotion
