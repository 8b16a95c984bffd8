"""benchmarks/bench_int8.py: its float32 reference is the trained Keras model, it leaves the generator
as it found it, and its divergence reads zero between equal distributions and more between others."""
from __future__ import annotations

import numpy as np
import pytest

from emolib import guidance, melody, notes
from tests.conftest import load_benchmark
from tests.mididata import random_generator


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_int8")


TOKENS = notes.tokenize({"pitch": np.arange(50, 90), "step": np.linspace(0, 1.2, 40),
                         "duration": np.linspace(0.05, 3, 40), "velocity": np.arange(40, 120, 2)})


def test_the_float32_reference_is_the_model_as_trained_and_is_undone_after(bench):
    import keras

    model = melody.build_model(random_generator(seed=4).config)
    keras.utils.set_random_seed(5)
    gen = melody.MelodyGenerator(melody.export_weights(model), random_generator(seed=4).config,
                                 np.zeros((1, 4, 4), np.int64))
    played = gen.teacher_forced_logits(TOKENS)
    rows = gen._lstm
    with bench.in_float32(gen):
        ours = gen.teacher_forced_logits(TOKENS)
    theirs = model.predict({"notes": TOKENS[None, :-1], "next": TOKENS[None, 1:, :3]}, verbose=0)
    for part in notes.TOKEN_FIELDS:
        np.testing.assert_allclose(ours[part], theirs[part][0], atol=1e-4, err_msg=part)
    assert gen._lstm is rows and any(not np.array_equal(ours[p], played[p]) for p in notes.TOKEN_FIELDS)
    assert all(np.array_equal(gen.teacher_forced_logits(TOKENS)[p], played[p]) for p in notes.TOKEN_FIELDS)


def test_a_guided_pair_runs_both_lstms_in_float32(bench):
    tuned, base = random_generator(seed=7), random_generator(seed=8)
    pair = guidance.Guided(tuned, base, 2.0)
    with bench.in_float32(pair):
        guided = pair.teacher_forced_logits(TOKENS)
    with bench.in_float32(tuned), bench.in_float32(base):
        alone = [g.teacher_forced_logits(TOKENS) for g in (tuned, base)]
    np.testing.assert_allclose(guided["pitch"], 3.0 * alone[0]["pitch"] - 2.0 * alone[1]["pitch"], atol=1e-3)


def test_divergence_is_zero_between_equal_distributions_and_grows_apart(bench):
    gen = random_generator(seed=9)
    songs = [TOKENS]
    ref = bench.log_probs(gen, songs)
    same = bench.divergence(songs, ref, ref)
    assert same["kl_per_note"] == pytest.approx(0.0, abs=1e-12) and same["nll_float32"] == same["nll_int8"] > 0
    flat = [{f: np.full_like(v, -np.log(v.shape[1])) for f, v in ref[0].items()}]
    assert bench.divergence(songs, ref, flat)["kl_per_note"] > 0.01
