"""The MIDI emotion classifier: features on synthetic pieces, JSON model round trip, real held-out songs."""
from __future__ import annotations

import json

import numpy as np
import pretty_midi
import pytest

from emolib import judge
from emolib.errors import EmolibError
from tests.conftest import run_cli

C_MAJOR = [60, 62, 64, 65, 67, 69, 71]
A_MINOR = [57, 59, 60, 62, 64, 65, 68]  # harmonic minor: the raised 7th makes it unmistakable


def piece(scale: list[int], seconds: float, step: float, velocity: int, chord_every: int = 4,
          octave_shift: int = 0) -> pretty_midi.PrettyMIDI:
    """A one-piano piece walking up and down ``scale``, a triad on the tonic every ``chord_every`` notes."""
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    walk = scale + scale[-2:0:-1]
    t, i = 0.0, 0
    while t < seconds:
        p = walk[i % len(walk)] + 12 * octave_shift
        inst.notes.append(pretty_midi.Note(velocity=velocity, pitch=p, start=t, end=t + step * 0.9))
        if i % chord_every == 0:
            root = scale[0] - 12 + 12 * octave_shift
            third = scale[2] - 12 + 12 * octave_shift
            for q in (root, third, root + 7):
                inst.notes.append(pretty_midi.Note(velocity=velocity - 10, pitch=q, start=t, end=t + step * 3))
        t += step
        i += 1
    pm.instruments.append(inst)
    return pm


def feat(pm) -> dict[str, float]:
    return dict(zip(judge.FEATURE_NAMES, judge.features(pm)))


def test_fast_loud_major_vs_slow_soft_minor_features():
    happy = feat(piece(C_MAJOR, 20, step=0.15, velocity=100, octave_shift=1))
    sad = feat(piece(A_MINOR, 20, step=0.8, velocity=45))
    assert happy["note_density"] > 4 * sad["note_density"]
    assert happy["onset_density"] > 4 * sad["onset_density"]
    assert happy["mode_major"] > 0.05 and sad["mode_major"] < -0.2  # C major shares its notes with A minor
    assert happy["velocity_mean"] > 85 and sad["velocity_mean"] < 45
    assert happy["pitch_mean"] > sad["pitch_mean"] + 10
    assert happy["ioi_log_mean"] < sad["ioi_log_mean"]
    assert happy["chord_size"] > 1.2  # the triads are counted as one onset each
    assert sad["distinct_pitches"] == len(set(A_MINOR) | {45, 48, 52})
    assert happy["off_key"] == pytest.approx(0.0, abs=1e-9)


def test_best_key_finds_tonic_and_mode():
    major = np.zeros(12)
    major[[7, 9, 11, 0, 2, 4, 6]] = [3, 1, 2, 1, 2, 1, 1]  # G major, tonic weighted
    assert judge.best_key(major)[:2] == (7, "major")
    minor = np.zeros(12)
    minor[[9, 11, 0, 2, 4, 5, 8]] = [3, 1, 2, 1, 2, 1, 1]  # A harmonic minor
    assert judge.best_key(minor)[:2] == (9, "minor")


def test_dissonant_chords_raise_dissonance():
    def chords(intervals):
        pm = pretty_midi.PrettyMIDI()
        inst = pretty_midi.Instrument(0)
        for k in range(20):
            for iv in intervals:
                inst.notes.append(pretty_midi.Note(80, 60 + iv, k * 0.5, k * 0.5 + 0.4))
        pm.instruments.append(inst)
        return feat(pm)["dissonance"]

    assert chords([0, 4, 7]) == 0.0
    assert chords([0, 1, 2]) == 1.0  # m2, M2, m2
    assert chords([0, 1, 6]) == pytest.approx(2 / 3)  # m2, tritone, fourth


def test_song_split_keeps_songs_together():
    clips = [judge.Clip(judge.Path(f"{e}/emopia_Q1_song{s}_{n}.mid"), e, judge.song_id(f"emopia_Q1_song{s}_{n}.mid"))
             for e, songs in (("happy", range(0, 10)), ("sad", range(10, 20))) for s in songs for n in range(3)]
    clips += [judge.Clip(judge.Path(f"sad/vgmidi_{k}.mid"), "sad", judge.song_id(f"vgmidi_{k}.mid")) for k in range(5)]
    train, test = judge.split_by_song(clips, test_fraction=0.3, seed=1)
    assert sorted(train + test) == list(range(len(clips)))
    assert not {clips[i].song for i in train} & {clips[i].song for i in test}
    assert judge.song_id("x/emopia_Q3_abc_def_12.mid") == "emopia:abc_def"
    assert judge.song_id("vgmidi_Zelda_3.mid") == "file:vgmidi_Zelda_3"
    assert judge.split_by_song(clips, 0.3, seed=1) == (train, test)


@pytest.mark.parametrize("candidate", [{"kind": "logistic", "C": 1.0},
                                       {"kind": "trees", "n_estimators": 20, "max_depth": 2, "learning_rate": 0.2}])
def test_fit_save_load_round_trip(tmp_path, candidate):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, len(judge.FEATURE_NAMES)))
    y = rng.integers(0, 3, size=120)
    X[:, 0] += 3 * y  # note density separates the classes
    model = judge.fit(X, y, ("a", "b", "c"), candidate)
    acc = np.mean(model.predict_proba_features(X).argmax(1) == y)
    assert acc > 0.9
    model.save(tmp_path / "judge.json")
    again = judge.load_judge(tmp_path)
    np.testing.assert_allclose(again.predict_proba_features(X), model.predict_proba_features(X), atol=1e-5)
    assert "pickle" not in (tmp_path / "judge.json").read_text()[:50]


def test_bad_files_are_named_and_skipped(tmp_path):
    bad = tmp_path / "broken.mid"
    bad.write_bytes(b"not a midi file")
    empty = tmp_path / "empty.mid"
    pretty_midi.PrettyMIDI().write(str(empty))
    good = tmp_path / "good.mid"
    piece(C_MAJOR, 5, 0.2, 80).write(str(good))
    with pytest.raises(EmolibError, match="broken.mid.*cannot parse MIDI"):
        judge.features(bad)
    with pytest.raises(EmolibError, match="no \\(non-drum\\) notes"):
        judge.features(empty)
    X, ok, errors = judge.feature_matrix([bad, good, empty], cache_dir=tmp_path / "cache")
    assert ok == [1] and X.shape == (1, len(judge.FEATURE_NAMES)) and len(errors) == 2
    X2, _, _ = judge.feature_matrix([good], cache_dir=tmp_path / "cache")  # served from the cache
    np.testing.assert_array_equal(X2[0], X[0])
    with pytest.raises(EmolibError, match="classifier not found"):
        judge.load_judge(tmp_path / "nothing.json")


def test_cli_predict(tmp_path):
    good = tmp_path / "good.mid"
    piece(C_MAJOR, 10, 0.2, 80).write(str(good))
    res = run_cli("judge", "predict", str(good), str(tmp_path / "missing.mid"))
    assert res.returncode == 1
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert lines[0]["emotion"] in lines[0]["probabilities"]
    assert sum(lines[0]["probabilities"].values()) == pytest.approx(1.0)
    assert "not found" in lines[1]["error"]


def test_shipped_judge_beats_chance_on_held_out_songs(shared):
    """The shipped classifier, scored on clips of songs it never saw (listed in its metrics.json)."""
    metrics = json.loads((judge.DEFAULT_MODEL.parent / "metrics.json").read_text())
    model = judge.load_judge()
    held_out = set(metrics["test_songs"])
    clips = [c for c in judge.list_clips(shared / "music" / "midi") if c.song in held_out]
    rng = np.random.default_rng(0)
    picked = [c for e in model.classes for c in rng.permutation([c for c in clips if c.emotion == e])[:15]]
    X, ok, errors = judge.feature_matrix([c.path for c in picked])
    assert not errors
    pred = model.predict_proba_features(X).argmax(1)
    truth = np.array([model.classes.index(picked[i].emotion) for i in ok])
    assert np.mean(pred == truth) > 0.45  # chance is 0.25; the full held-out set scores ~0.6
    assert metrics["test_accuracy"] > 0.5


def test_train_on_a_tiny_corpus_writes_model_and_metrics(tmp_path):
    """Four synthetic 'emotions' (fast/slow x major/minor), 6 songs of 2 clips each: split by song, JSON out."""
    styles = {"happy": (C_MAJOR, 0.15, 100), "angry": (A_MINOR, 0.15, 100), "relax": (C_MAJOR, 0.7, 45),
              "sad": (A_MINOR, 0.7, 45)}
    for emotion, (scale, step, vel) in styles.items():
        (tmp_path / "midi" / emotion).mkdir(parents=True)
        for song in range(6):
            for clip in range(2):
                shift = (song + clip) % 3 - 1
                piece([p + shift for p in scale], 12, step * (1 + 0.1 * clip), vel + 3 * song).write(
                    str(tmp_path / "midi" / emotion / f"emopia_Q1_{emotion}{song}_{clip}.mid"))
    (tmp_path / "midi" / "sad" / "broken.mid").write_bytes(b"junk")
    metrics = judge.train(tmp_path / "midi", tmp_path / "model", seed=0, folds=2, progress=False,
                          candidates=[{"kind": "logistic", "C": 1.0}])
    assert (tmp_path / "model" / "judge.json").is_file()
    assert json.loads((tmp_path / "model" / "metrics.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
    assert metrics["test_accuracy"] >= 0.75
    assert len(metrics["clips"]["unreadable"]) == 1 and "broken.mid" in metrics["clips"]["unreadable"][0]
    assert metrics["clips"]["train"] + metrics["clips"]["test"] == 48
    assert all(n % 2 == 0 for n in (metrics["clips"]["train"], metrics["clips"]["test"]))  # songs stay whole
    model = judge.load_judge(tmp_path / "model")
    assert model.predict(piece(C_MAJOR, 12, 0.15, 105)) == "happy"
