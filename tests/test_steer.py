"""Steering the melody LSTMs and blending emotions, on small random-weight generators (no TensorFlow)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from emolib import judge, melody, steer
from emolib.errors import EmolibError


def random_generator(seed: int = 0, units: int = 16, low: int = 48) -> melody.Generator:
    """A melody.Generator with random LSTM weights: plays ~5 notes/s in a wide register, monophonic."""
    rng = np.random.default_rng(seed)
    w = {"lstm0_kernel": rng.normal(0, 0.5, (3, 4 * units)), "lstm0_recurrent": rng.normal(0, 0.3, (units, 4 * units)),
         "lstm0_bias": np.zeros(4 * units), "pitch_w": rng.normal(0, 0.3, (units, 128)), "pitch_b": np.zeros(128),
         "step_w": rng.normal(0, 0.01, (units, 1)), "step_b": np.array([0.2]),
         "duration_w": rng.normal(0, 0.01, (units, 1)), "duration_b": np.array([0.3])}
    w["pitch_b"][low:low + 30] = 3.0  # a two-and-a-half octave register the "LSTM" prefers
    primers = np.stack([np.stack([rng.integers(low, low + 24, 10), np.full(10, 0.2), np.full(10, 0.3),
                                  np.full(10, 70.0)], axis=1) for _ in range(4)]).astype(np.float32)
    return melody.Generator(w, primers, emotion="test")


TARGET = steer.Steering(onset_density=2.5, pitch_mean=70.0, pitch_std=8.0, mode=-1.0, velocity_mean=45.0,
                        velocity_std=8.0, chord_size=2.0, duration=0.8)


def feats(pm) -> dict[str, float]:
    return dict(zip(judge.FEATURE_NAMES, judge.features(pm)))


def test_steering_off_is_the_plain_generator():
    gen = random_generator()
    plain = gen.generate_notes(20, seed=3)
    same = steer.steered(gen, TARGET.off()).generate_notes(20, seed=3)
    assert plain.equals(same)
    assert not plain.equals(steer.steered(gen, TARGET).generate_notes(20, seed=3))


def test_steering_moves_density_chords_register_dynamics_and_mode():
    gen = random_generator()
    plain = [feats(gen.generate(30, seed=s)) for s in range(4)]
    steered = [feats(steer.steered(gen, TARGET).generate(30, seed=s)) for s in range(4)]
    med = lambda rows, k: float(np.median([r[k] for r in rows]))  # noqa: E731
    assert med(plain, "onset_density") > 4
    assert med(steered, "onset_density") == pytest.approx(2.5, rel=0.2)
    assert med(plain, "chord_size") == pytest.approx(1.0, abs=0.05) and med(steered, "chord_size") > 1.5
    assert abs(med(steered, "pitch_mean") - 70) < abs(med(plain, "pitch_mean") - 70)
    assert abs(med(steered, "pitch_mean") - 70) <= 6
    assert med(steered, "velocity_mean") == pytest.approx(45, abs=2)
    assert np.exp(med(steered, "duration_log_mean")) == pytest.approx(0.8, rel=0.2)
    assert med(steered, "mode_major") < med(plain, "mode_major") and med(steered, "mode_major") < 0
    major = [feats(steer.steered(gen, replace(TARGET, mode=1.0)).generate(30, seed=s)) for s in range(4)]
    assert med(major, "mode_major") > 0
    for row in steered:  # still music, not one note
        assert row["distinct_pitches"] >= 8


def test_pieces_keep_their_length_and_seed():
    gen = steer.steered(random_generator(), TARGET)
    a, b = gen.generate(25, seed=7), gen.generate(25, seed=7)
    assert a.get_end_time() == pytest.approx(25.0, abs=1e-6)
    assert [(n.pitch, n.start) for n in a.instruments[0].notes] == [(n.pitch, n.start) for n in b.instruments[0].notes]


def test_shipped_targets_follow_arousal_and_valence():
    t = steer.load_targets()
    for loud in ("happy", "angry"):
        for soft in ("sad", "relax"):
            assert t[loud]["velocity_mean"] > t[soft]["velocity_mean"] + 10
            assert t[loud]["onset_density"] > t[soft]["onset_density"]
    assert t["happy"]["mode"] > 0 and t["relax"]["mode"] > 0 and t["angry"]["mode"] < 0 and t["sad"]["mode"] < 0
    s = steer.steering_for("sad")
    assert s.mode == -1.0 and s.velocity_mean < t["sad"]["velocity_mean"]  # contrast: clearer than the median


def test_blend_mixes_targets_in_proportion():
    happy, sad = steer.steering_for("happy"), steer.steering_for("sad")
    mid = steer.blend_steering({"happy": 0.5, "sad": 0.5})
    assert mid.mode == pytest.approx(0.0)
    assert mid.velocity_mean == pytest.approx((happy.velocity_mean + sad.velocity_mean) / 2)
    assert sad.onset_density < mid.onset_density < happy.onset_density
    assert steer.blend_steering({"happy": 2, "sad": 0}) == happy  # normalised
    assert steer.blend_plan({"sad": 0.6, "relax": 0.3, "angry": 0.1}, 40) == [("sad", 80 / 3), ("relax", 40 / 3)]
    assert steer.blend_plan({"sad": 0.4, "relax": 0.3, "angry": 0.3}, 40, min_share=0.5) == [("sad", 40.0)]
    face = {"angry": 0.1, "happy": 0.2, "neutral": 0.5, "sad": 0.2}
    mapping = {"angry": "angry", "happy": "happy", "neutral": "relax", "sad": "sad"}
    assert steer.to_music_probabilities(face, mapping) == pytest.approx({"happy": 0.2, "sad": 0.2, "angry": 0.1, "relax": 0.5})
    with pytest.raises(EmolibError, match="'fear' has no music emotion"):
        steer.to_music_probabilities({"fear": 1.0}, mapping)
    with pytest.raises(EmolibError, match="unknown music emotion"):
        steer.normalise({"neutral": 1.0})
    with pytest.raises(EmolibError, match="positive sum"):
        steer.normalise({"happy": 0.0, "sad": 0.0})


def test_generate_blend_sections_and_one_hot(monkeypatch):
    gens = {e: random_generator(seed=k, low=40 + 8 * k) for k, e in enumerate(("happy", "sad", "angry", "relax"))}
    monkeypatch.setattr(melody, "load_generator", lambda emotion, path=None: gens[emotion])
    pm = steer.generate_blend({"happy": 0.5, "sad": 0.5}, seconds=20, seed=1)
    notes = sorted(pm.instruments[0].notes, key=lambda n: n.start)
    assert pm.get_end_time() == pytest.approx(20.0, abs=1e-6)
    first = [n for n in notes if n.start < 10]
    second = [n for n in notes if n.start >= 10]
    assert first and second
    assert "happy:0.50" in pm.instruments[0].name and "sad:0.50" in pm.instruments[0].name
    one_hot = steer.generate_blend({"sad": 1.0}, seconds=15, seed=2)
    direct = steer.generate("sad", seconds=15, seed=2)
    assert [(n.pitch, n.start) for n in one_hot.instruments[0].notes] == [(n.pitch, n.start) for n in direct.instruments[0].notes]
    plain = steer.generate("sad", seconds=15, seed=2, strength=0)
    assert [(n.pitch, n.start) for n in plain.instruments[0].notes] == \
        [(n.pitch, n.start) for n in gens["sad"].generate(seconds=15, seed=2).instruments[0].notes]


@pytest.mark.parametrize("emotion", ["happy", "sad", "angry", "relax"])
def test_steered_pieces_keep_the_melody_guarantees(emotion):
    """What the pipeline plays: >= 60 notes, length within 10%, positive durations, >= 8 pitches."""
    for seed in range(6):
        for temperature in (0.8, 1.5):
            midi = steer.generate(emotion, seconds=40, temperature=temperature, seed=seed)
            notes = [n for inst in midi.instruments for n in inst.notes]
            assert len(notes) >= 60, (seed, temperature, len(notes))
            assert abs(midi.get_end_time() - 40) <= 4
            assert all(n.end > n.start for n in notes)
            assert len({n.pitch for n in notes}) >= 8
            assert all(21 <= n.pitch <= 108 for n in notes)
