"""emolib.melody: data split and windows, training writes a reloadable model, fast and valid generation."""
import json
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from emolib import MUSIC_EMOTIONS, melody, notes
from emolib.errors import EmolibError
from tests.conftest import run_cli


def make_corpus(root: Path, emotion: str = "happy", songs: int = 4, clips: int = 2, n_notes: int = 90, seed: int = 0) -> Path:
    """A tiny emotion folder of EMOPIA-named clips: arpeggios with varied rhythm and dynamics."""
    rng = np.random.default_rng(seed)
    folder = root / emotion
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(songs):
        for c in range(clips):
            base = int(rng.integers(48, 72))
            t, rows = 0.0, []
            for k in range(n_notes):
                pitch = base + [0, 4, 7, 12, 7, 4][k % 6] + int(rng.integers(-2, 3))
                dur = float(rng.choice([0.25, 0.5, 1.0]))
                rows.append((pitch, t, dur, int(rng.integers(50, 110))))
                t += float(rng.choice([0.0, 0.25, 0.5]))
            pm = notes.notes_to_midi({"pitch": [r[0] for r in rows], "start": [r[1] for r in rows],
                                      "duration": [r[2] for r in rows]}, velocity=[r[3] for r in rows])
            pm.write(str(folder / f"emopia_Q1_song{s}x_{c}.mid"))
    (folder / "broken.mid").write_bytes(b"not midi")
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny generator trained by the real code path on the synthetic corpus (seq_length 8, 16 units)."""
    root = tmp_path_factory.mktemp("melody")
    make_corpus(root / "midi")
    results = list(melody.train_all(root / "midi", root / "models", emotions=["happy"], epochs=2, seq_length=8,
                                    units=16, batch_size=64, seed=3, primers=8, verbose=0, command="pytest tiny"))
    return root, results[0]


def test_song_id_groups_emopia_clips_and_vgmidi_phrases():
    assert melody.song_id("x/emopia_Q2_--2B4d4lQhs_1.mid") == "emopia:--2B4d4lQhs"
    assert melody.song_id("emopia_Q4_a_b_c_12.mid") == "emopia:a_b_c"
    assert melody.song_id("vgmidi_Zelda_Theme_0.mid") == melody.song_id("vgmidi_Zelda_Theme_1.mid")


def test_split_by_song_never_leaks_a_song_and_is_seeded():
    files = [f"emopia_Q1_song{s}_{c}.mid" for s in range(20) for c in range(3)]
    train, val = melody.split_by_song(files, val_fraction=0.2, seed=1)
    assert len(train) + len(val) == len(files) and val
    assert not {melody.song_id(f) for f in train} & {melody.song_id(f) for f in val}
    assert len({melody.song_id(f) for f in val}) == 4
    assert melody.split_by_song(files, 0.2, seed=1) == (train, val)
    assert melody.split_by_song(files, 0.2, seed=2) != (train, val)


def test_make_windows_labels_are_the_next_note_and_never_cross_files():
    import pandas as pd

    def table(pitches):
        n = len(pitches)
        return pd.DataFrame({"pitch": pitches, "step": np.full(n, 0.25), "duration": np.full(n, 9.0)})

    x, y = melody.make_windows([table([60, 61, 62, 63, 64]), table([70, 71, 72]), table([80, 81])], seq_length=2)
    assert x.shape == (3 + 1, 2, 3)
    np.testing.assert_allclose(x[0, :, 0] * 128, [60, 61])
    assert y["pitch"].tolist() == [62, 63, 64, 72]
    np.testing.assert_allclose(y["duration"], melody.MAX_DURATION)  # clipped to the generation bounds
    np.testing.assert_allclose(x[..., 2], melody.MAX_DURATION)


def test_training_writes_model_bundle_metrics_and_curves(tiny):
    root, metrics = tiny
    folder = root / "models" / "happy"
    assert {p.name for p in folder.iterdir()} == {"model.keras", "generator.npz", "metrics.json", "loss.png"}
    saved = json.loads((folder / "metrics.json").read_text())
    assert saved["command"] == "pytest tiny"
    assert saved["data"]["skipped"] and "broken.mid" in next(iter(saved["data"]["skipped"]))
    assert saved["data"]["files_used"] == 8 and saved["data"]["val_songs"] >= 1
    assert saved["epochs_run"] == 2 and len(saved["history"]["val_loss"]) == 2
    assert 0.0 <= saved["pitch_top1_accuracy"] <= 1.0
    assert saved["data"]["notes"] == 8 * 90


def test_model_reloads_in_safe_mode_and_numpy_step_matches_keras(tiny):
    import keras

    root, _ = tiny
    model = keras.saving.load_model(root / "models" / "happy" / "model.keras", safe_mode=True)
    assert model.input_shape == (None, 8, 3)
    gen = melody.load_generator("happy", path=root / "models")
    x = gen.primers[0, :, :3] / np.array([128.0, 1.0, 1.0], np.float32)
    ref = model.predict(x[None], verbose=0)
    assert set(ref) == {"pitch", "step", "duration"}
    mine = gen.predict_window(x)
    np.testing.assert_allclose(mine.pitch_logits, ref["pitch"][0], atol=1e-4)
    assert mine.step == pytest.approx(float(ref["step"][0, 0]), abs=1e-4)
    assert mine.duration == pytest.approx(float(ref["duration"][0, 0]), abs=1e-4)


def test_generation_is_seeded_timed_and_valid(tiny):
    root, _ = tiny
    gen = melody.load_generator("happy", path=root / "models" / "happy")
    a = gen.generate_notes(seconds=12, seed=5)
    b = gen.generate_notes(seconds=12, seed=5)
    c = gen.generate_notes(seconds=12, seed=6)
    assert a.equals(b) and not a.equals(c)
    assert a["start"].max() < 12 and a["end"].max() == pytest.approx(12)
    assert (a["duration"] > 0).all() and a["pitch"].between(21, 108).all()
    assert a["velocity"].between(1, 127).all() and a["velocity"].nunique() > 1
    midi = pretty_midi.PrettyMIDI(str(notes.write_midi(gen.generate(seconds=12, seed=5), root / "p.mid")))
    assert len(midi.instruments[0].notes) == len(a)
    with pytest.raises(EmolibError, match="seconds must be positive"):
        gen.generate(seconds=0)
    with pytest.raises(EmolibError, match="temperature must be >= 0"):
        gen.generate(temperature=-1)
    tiny_piece = gen.generate_notes(seconds=0.02, seed=1)
    assert len(tiny_piece) >= 1 and tiny_piece["end"].max() == pytest.approx(0.02)
    greedy = gen.generate_notes(seconds=5, temperature=0, seed=1)
    assert greedy["pitch"].between(21, 108).all()


def test_stale_bundle_weights_are_reexported_from_the_model(tiny, tmp_path):
    import shutil

    import keras

    root, _ = tiny
    src = root / "models" / "happy"
    for name in ("model.keras", "generator.npz"):
        shutil.copy(src / name, tmp_path / name)
    model = melody.load_keras_model(tmp_path / "model.keras")
    model.get_layer("pitch").set_weights([w * 0 for w in model.get_layer("pitch").get_weights()])
    model.save(tmp_path / "model.keras")
    gen = melody.load_generator("happy", path=tmp_path)
    assert np.all(gen.predict_window(gen.primers[0, :, :3] / 128.0).pitch_logits == 0)


def test_load_generator_errors_name_the_file(tmp_path):
    with pytest.raises(EmolibError, match="melody model not found"):
        melody.load_generator("happy", path=tmp_path)
    (tmp_path / "model.keras").write_bytes(b"junk")
    with pytest.raises(EmolibError, match="generator.npz"):
        melody.load_generator("happy", path=tmp_path)
    with pytest.raises(EmolibError, match="unknown emotion"):
        melody.load_generator("joyful")
    with pytest.raises(EmolibError, match="MIDI folder not found"):
        next(melody.train_all(tmp_path / "nothing", tmp_path / "out"))


# --------------------------------------------------------------------------- shipped models
@pytest.mark.parametrize("emotion", MUSIC_EMOTIONS)
def test_shipped_generator_meets_the_guarantees(emotion):
    gen = melody.load_generator(emotion)
    assert gen is melody.load_generator(emotion)  # cached per process
    meta = json.loads((melody.SHIPPED_DIR / emotion / "metrics.json").read_text())
    assert "melody train" in meta["command"] and meta["emotion"] == emotion
    assert sum(p.stat().st_size for p in (melody.SHIPPED_DIR / emotion).iterdir()) < 2_000_000
    for seed in range(12):
        for temperature in (0.8, 1.0, 1.5):
            seconds = 40.0 if seed % 3 else 25.0
            midi = pretty_midi.PrettyMIDI(__import__("io").BytesIO(notes.midi_bytes(
                gen.generate(seconds=seconds, temperature=temperature, seed=seed))))
            ns = midi.instruments[0].notes
            assert len(ns) >= 60, (seed, temperature, len(ns))
            assert abs(midi.get_end_time() - seconds) <= 0.1 * seconds
            assert min(n.end - n.start for n in ns) > 0
            assert len({n.pitch for n in ns}) >= 8
            assert 21 <= min(n.pitch for n in ns) and max(n.pitch for n in ns) <= 108


def test_shipped_keras_model_has_the_documented_interface():
    model = melody.load_generator("relax").model
    assert model.input_shape == (None, 25, 3)
    out = model.predict(np.zeros((1, 25, 3), np.float32), verbose=0)
    assert out["pitch"].shape == (1, 128) and out["step"].shape == (1, 1) and out["duration"].shape == (1, 1)


def test_cli_generate_writes_pieces_and_json_lines(tmp_path):
    res = run_cli("generate", "--emotion", "sad", "--count", "2", "--out", str(tmp_path), "--seed", "7",
                  "--seconds", "30", "--temperature", "0.9", "--steering", "0")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [Path(r["path"]).name for r in rows] == ["sad_0.mid", "sad_1.mid"]
    for r in rows:
        assert r["notes"] >= 60 and abs(r["seconds"] - 30) <= 3 and r["distinct_pitches"] >= 8
        assert pretty_midi.PrettyMIDI(r["path"]).get_end_time() == pytest.approx(r["seconds"], abs=0.01)


def test_training_command_is_recorded_as_retypeable():
    assert melody._command_line(["/x/emolib/__main__.py", "melody", "train", "--out", "a b"]) == \
        "python -m emolib melody train --out 'a b'"
    assert melody._command_line(["/venv/bin/emolib", "melody", "train"]) == "emolib melody train"


def test_strategy_by_name_and_unknown_names_fail_clearly(tiny):
    import tensorflow as tf

    assert isinstance(melody.get_strategy("default"), tf.distribute.Strategy)
    assert isinstance(melody.get_strategy("mirrored"), tf.distribute.MirroredStrategy)
    with pytest.raises(EmolibError, match="unknown strategy"):
        melody.get_strategy("quantum")


def test_cli_melody_train_on_a_missing_folder_is_one_clear_line(tmp_path):
    res = run_cli("melody", "train", "--midi", str(tmp_path / "none"), "--out", str(tmp_path / "o"))
    assert res.returncode == 1 and res.stdout == ""
    assert "MIDI folder not found" in res.stderr and str(tmp_path / "none") in res.stderr
