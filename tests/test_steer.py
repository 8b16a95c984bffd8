"""Light steering of the note LSTMs and blending emotions, on small random-weight generators (no TensorFlow)."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from emolib import guards, guidance, melody, music_features, notes, steer
from emolib.errors import EmolibError
from tests.mididata import SMALL, pitch_runs, random_generator, random_weights, stuck_generator

OWN = {"onset_density": 4.0, "pitch_mean": 62.0, "pitch_std": 10.0, "velocity_mean": 75.0, "velocity_std": 10.0,
       "chord_size": 1.5, "duration": 0.5, "mode": 1.0}
SLOW_SOFT_HIGH = {**OWN, "onset_density": 2.0, "velocity_mean": 50.0, "pitch_mean": 70.0}


def feats(pm) -> dict[str, float]:
    return dict(zip(music_features.FEATURE_NAMES, music_features.features(pm)))


def med(rows, key) -> float:
    return float(np.median([r[key] for r in rows]))


def test_strength_and_repeat_zero_is_the_plain_generator():
    gen = random_generator()
    assert steer.hook("test", steer.Steering(OWN, mode=1.0, strength=0.0, repeat=0.0), {"test": OWN}) is None
    assert steer.hook("test", steer.Steering(OWN, mode=1.0, strength=0.0), {"test": OWN}) is not None  # repeats
    plain = gen.generate_notes(20, seed=3)
    nudged = gen.generate_notes(20, seed=3, steer=steer.hook("test", steer.Steering(OWN, mode=-1.0, repeat=0.0),
                                                             {"test": OWN}))
    assert not plain.equals(nudged)  # the mode nudge acts even when the targets are the generator's own


def test_tilts_move_tempo_loudness_and_register_toward_the_target():
    gen = random_generator()
    plain = [feats(gen.generate(30, seed=s)) for s in range(5)]
    hook = steer.Hook(steer.Steering(SLOW_SOFT_HIGH, mode=0.0, strength=1.0, repeat=0.0), OWN)
    tilted = [feats(gen.generate(30, seed=s, steer=hook)) for s in range(5)]
    assert med(tilted, "onset_density") < 0.85 * med(plain, "onset_density")
    assert med(tilted, "velocity_mean") < med(plain, "velocity_mean") - 5
    assert med(tilted, "pitch_mean") > med(plain, "pitch_mean") + 2
    for row in tilted:  # still music, not one note
        assert row["distinct_pitches"] >= 8
    half = steer.Hook(steer.Steering(SLOW_SOFT_HIGH, mode=0.0, strength=0.5), OWN)
    np.testing.assert_allclose(half.velocity_bias, hook.velocity_bias / 2)


def test_mode_nudge_leans_major_or_minor():
    gen = random_generator(seed=2)
    def nudged(mode: float) -> list[dict[str, float]]:
        hook = steer.Hook(steer.Steering(OWN, mode=mode, strength=3, repeat=0.0), OWN)
        return [feats(gen.generate(30, seed=s, steer=hook)) for s in range(5)]

    minor, major = nudged(-1.0), nudged(1.0)
    assert med(major, "mode_major") > med(minor, "mode_major")


def test_shipped_targets_follow_arousal_and_valence():
    t = steer.load_targets()
    for loud in ("happy", "angry"):
        for soft in ("sad", "relax"):
            assert t[loud]["velocity_mean"] > t[soft]["velocity_mean"] + 10
            assert t[loud]["onset_density"] > t[soft]["onset_density"]
    assert t["happy"]["mode"] > 0 and t["relax"]["mode"] > 0 and t["angry"]["mode"] < 0 and t["sad"]["mode"] < 0
    s = steer.steering_for("sad")
    assert s.mode == -1.0 and s.targets["velocity_mean"] == pytest.approx(t["sad"]["velocity_mean"])
    caricature = steer.steering_for("sad", contrast=1.5)
    assert caricature.targets["velocity_mean"] < t["sad"]["velocity_mean"]  # pushed further from the mean
    assert steer.hook("sad", s).step_bias == pytest.approx(0.0)  # its own targets: no tempo tilt


def test_blend_mixes_targets_in_proportion():
    happy, sad = steer.steering_for("happy"), steer.steering_for("sad")
    mid = steer.blend_steering({"happy": 0.5, "sad": 0.5})
    assert happy.mode == steer.MODE_WEIGHT["happy"] and sad.mode == -steer.MODE_WEIGHT["sad"]
    assert mid.mode == pytest.approx((happy.mode + sad.mode) / 2)
    mean = (happy.targets["velocity_mean"] + sad.targets["velocity_mean"]) / 2
    assert mid.targets["velocity_mean"] == pytest.approx(mean)
    assert sad.targets["onset_density"] < mid.targets["onset_density"] < happy.targets["onset_density"]
    assert steer.blend_steering({"happy": 2, "sad": 0}) == happy  # normalised
    assert steer.blend_plan({"sad": 0.6, "relax": 0.3, "angry": 0.1}, 40) == [("sad", 80 / 3), ("relax", 40 / 3)]
    assert steer.blend_plan({"sad": 0.4, "relax": 0.3, "angry": 0.3}, 40, min_share=0.5) == [("sad", 40.0)]
    face = {"angry": 0.1, "happy": 0.2, "neutral": 0.5, "sad": 0.2}
    mapping = {"angry": "angry", "happy": "happy", "neutral": "relax", "sad": "sad"}
    assert steer.to_music_probabilities(face, mapping) == pytest.approx({"happy": 0.2, "sad": 0.2, "angry": 0.1,
                                                                         "relax": 0.5})
    with pytest.raises(EmolibError, match="'fear' has no music emotion"):
        steer.to_music_probabilities({"fear": 1.0}, mapping)
    with pytest.raises(EmolibError, match="unknown music emotion"):
        steer.normalise({"neutral": 1.0})
    with pytest.raises(EmolibError, match="positive sum"):
        steer.normalise({"happy": 0.0, "sad": 0.0})


def test_generate_blend_sections_and_one_hot(monkeypatch):
    gens = {e: random_generator(seed=k, emotion=e) for k, e in enumerate(("happy", "sad", "angry", "relax", "base"))}
    monkeypatch.setattr(melody, "load_generator", lambda emotion, path=None: gens[emotion])
    pm = steer.generate_blend({"happy": 0.5, "sad": 0.5}, seconds=20, seed=1)
    notes = sorted(pm.instruments[0].notes, key=lambda n: n.start)
    assert pm.get_end_time() == pytest.approx(20.0, abs=1e-6)
    assert [n for n in notes if n.start < 10] and [n for n in notes if n.start >= 10]
    assert "happy:0.50" in pm.instruments[0].name and "sad:0.50" in pm.instruments[0].name
    one_hot = steer.generate_blend({"sad": 1.0}, seconds=15, seed=2)
    direct = steer.generate("sad", seconds=15, seed=2)
    def onsets(pm):
        return [(n.pitch, n.start) for n in pm.instruments[0].notes]

    assert onsets(one_hot) == onsets(direct)
    plain = steer.generate("sad", seconds=15, seed=2, strength=0, repeat=0)
    assert [(n.pitch, n.start) for n in plain.instruments[0].notes] == \
        [(n.pitch, n.start) for n in gens["sad"].generate(seconds=15, seed=2).instruments[0].notes]


def test_a_blend_of_key_frame_models_moves_to_one_key(monkeypatch):
    home = {e: random_generator(seed=k, emotion=e) for k, e in enumerate(("happy", "sad", "angry", "relax", "base"))}
    framed = {e: melody.MelodyGenerator(g.weights, replace(g.config, key_frame=True), g.primers, emotion=e)
              for e, g in home.items()}
    pieces = {}
    for name, gens in (("home", home), ("framed", framed)):
        monkeypatch.setattr(melody, "load_generator", lambda emotion, path=None, gens=gens: gens[emotion])
        pm = steer.generate_blend({"happy": 0.5, "sad": 0.5}, seconds=20, seed=3)
        pieces[name] = sorted((n.start, n.pitch) for n in pm.instruments[0].notes)
    moved = {b[1] - a[1] for a, b in zip(pieces["home"], pieces["framed"])}
    assert len(moved) == 1 and moved != {0} and len(pieces["home"]) == len(pieces["framed"])  # both sections alike
    guidance.Guided(framed["happy"], home["base"], 2.0)  # the key frame is the data's, not the architecture's


@pytest.mark.parametrize("emotion", ["happy", "sad", "angry", "relax"])
def test_steered_and_blended_pieces_keep_the_melody_guarantees(emotion):
    """What the pipeline plays: >= 60 notes, 36-44 s for 40 s, positive durations, >= 8 pitches, 21-108."""
    others = [e for e in ("happy", "sad", "angry", "relax") if e != emotion]
    for seed in range(4):
        for temperature in (0.8, 1.2):
            blend = {emotion: 0.6, others[seed % 3]: 0.4}
            for midi in (steer.generate(emotion, seconds=40, temperature=temperature, seed=seed),
                         steer.generate_blend(blend, seconds=40, temperature=temperature, seed=seed)):
                notes = [n for inst in midi.instruments for n in inst.notes]
                assert len(notes) >= 60, (seed, temperature, len(notes))
                assert 36 <= midi.get_end_time() <= 44
                assert all(n.end > n.start for n in notes)
                assert len({n.pitch for n in notes}) >= 8
                assert all(21 <= n.pitch <= 108 for n in notes)


def onset_starts(tokens) -> list[int]:
    """Indices of the notes that start an onset (the first note, and every note with a step above 0)."""
    return [k for k, tok in enumerate(tokens) if k == 0 or tok[0] != 0]


def test_a_phrase_comes_back_up_to_its_last_onsets_at_its_end():
    tokens = [np.array([0 if k == 0 else 3, 60 + k % 7, 5, 8]) for k in range(16)]  # 16 onsets: one phrase
    tokens.insert(5, np.array([0, 48, 5, 8]))  # a chord note: not an onset
    chord, drawn = np.array([0, 50, 5, 8]), np.array([7, 70, 5, 8])
    always = steer.Phrases(1.0, np.random.default_rng(0))
    assert always.next_notes(tokens[:16], drawn) == [drawn]  # 15 onsets: the phrase goes on
    assert always.next_notes(tokens, chord) == [chord]  # a chord note never ends a phrase
    again = always.next_notes(tokens, drawn)
    assert len(again) == 17 - steer.FRESH_ONSETS  # up to the last two onsets, the chord note included
    assert again[0][0] == drawn[0]  # the phrase starts again after the gap the model chose
    assert all(np.array_equal(a[1:], b[1:]) and a is not b for a, b in zip(again, tokens))
    assert all(np.array_equal(a, b) for a, b in zip(again[1:], tokens[1:]))
    played = [*tokens, *again, drawn]
    assert always.next_notes(played, drawn) == [drawn]  # 15 onsets into the new phrase: it goes on
    assert len(always.next_notes([*played, drawn], drawn)) == 17 - steer.FRESH_ONSETS  # 16: it comes back
    never = steer.Phrases(0.0, np.random.default_rng(0))
    assert never.next_notes(tokens, drawn) == [drawn]
    with pytest.raises(EmolibError, match="repeat is a probability"):
        steer.steering_for("sad", repeat=1.5)
    with pytest.raises(EmolibError, match="strength must be >= 0"):
        steer.steering_for("sad", strength=-0.5)


def test_generated_pieces_play_their_phrases_again():
    gen = random_generator(seed=4)
    hook = steer.hook("test", steer.Steering(OWN, mode=0.0, strength=0.0, repeat=1.0), {"test": OWN})
    tokens, _ = gen.generate_tokens(40, seed=1, steer=hook)
    starts = onset_starts(tokens)
    first, again = starts[steer.PHRASE_ONSETS], starts[steer.PHRASE_ONSETS - steer.FRESH_ONSETS]
    assert np.array_equal(tokens[first + 1:first + again], tokens[1:again])
    assert np.array_equal(tokens[first, 1:], tokens[0, 1:]) and tokens[first, 0] != 0
    plain, _ = gen.generate_tokens(40, seed=1)
    starts = onset_starts(plain)
    assert not np.array_equal(plain[starts[16] + 1:starts[16] + starts[14]], plain[1:starts[14]])


def test_phrases_played_again_keep_the_guards():
    """A model stuck on one pitch and slow: phrases played again still may not break the pace or
    repeat a pitch more than MAX_REPEATS times where one phrase ends and the next begins."""
    stuck = stuck_generator()
    for seed in range(6):
        hook = steer.hook("test", steer.Steering(OWN, mode=0.0, strength=0.0, repeat=1.0), {"test": OWN})
        table = stuck.generate_notes(40, seed=seed, steer=hook)
        longest = pitch_runs(table["pitch"]).max()
        assert len(table) >= 60 and longest <= guards.MAX_REPEATS, (seed, len(table), longest)


def test_guided_logits_move_away_from_the_base():
    tuned, base = random_generator(seed=1), random_generator(seed=2)
    guided = guidance.Guided(tuned, base, 2.0)
    tokens = tuned.primers[0]
    ours, t, b = (g.teacher_forced_logits(tokens) for g in (guided, tuned, base))
    for part in ("step", "pitch", "duration", "velocity"):  # the same distributions (logits may differ by a constant)
        want = t[part] + 2.0 * (melody.log_softmax(t[part]) - melody.log_softmax(b[part]))
        np.testing.assert_allclose(melody.log_softmax(ours[part]), melody.log_softmax(want), atol=1e-4, err_msg=part)
    assert np.array_equal(guided.primers, tuned.primers) and guided.emotion == tuned.emotion
    smaller = random_generator(seed=2, config=replace(tuned.config, units=8))
    with pytest.raises(EmolibError, match="the same architecture"):
        guidance.Guided(tuned, smaller, 2.0)


def test_guidance_with_the_held_key_input_is_each_lstm_told_what_it_was_trained_on():
    """An emotion's LSTM with the held-key input guided from a base with it or without it, and one without
    it (fine-tuned before it) from a base with it: always exactly p_emotion^(1 + w) / p_base^w, each LSTM
    told which keys are down only if it was trained so. From a base that cannot see held keys, guidance
    moves them away (1 + w) times as far."""
    config = replace(SMALL, held_input=True)
    primers = random_generator().primers
    tuned = melody.MelodyGenerator(random_weights(config, seed=1), config, primers)
    blind_tuned = melody.MelodyGenerator(tuned.weights, SMALL, primers)
    tokens = notes.tokenize({"pitch": np.tile([48, 60, 64, 67], 6), "step": np.tile([0.4, 0.0, 0.2, 0.2], 6),
                             "duration": np.tile([2.0, 0.3, 0.3, 1.0], 6), "velocity": np.full(24, 80)})
    down = guards.down_before(tokens[:-1], tokens[1:, 0]) > 0
    assert down.sum() >= 10
    blind_base, told_base = random_generator(seed=2), melody.MelodyGenerator(random_weights(config, seed=2), config,
                                                                               primers)
    for emotion, base in ((tuned, blind_base), (tuned, told_base), (blind_tuned, told_base)):
        guided = guidance.Guided(emotion, base, 2.0)
        ours, t, b = (g.teacher_forced_logits(tokens) for g in (guided, emotion, base))
        for part in ("step", "pitch", "duration", "velocity"):
            want = t[part] + 2.0 * (melody.log_softmax(t[part]) - melody.log_softmax(b[part]))
            np.testing.assert_allclose(melody.log_softmax(ours[part]), melody.log_softmax(want), atol=1e-4,
                                       err_msg=part)
    lower = guidance.Guided(blind_tuned, blind_base, 2.0).teacher_forced_logits(tokens)["pitch"] \
        - guidance.Guided(tuned, blind_base, 2.0).teacher_forced_logits(tokens)["pitch"]
    assert lower[down].mean() > 2.5 * melody.HELD_PRIOR  # (1 + w) times the prior, less the noise


def test_guidance_stays_among_what_the_emotion_finds_plausible():
    """With ``plausibility`` a, guidance leaves the values the emotion's LSTM gives at least a times its
    likeliest value's probability as they were, and puts the rest out of reach, unless the guards
    forbid every plausible value."""
    tuned, base = random_generator(seed=1), random_generator(seed=2)
    free, kept = guidance.Guided(tuned, base, 2.0), guidance.Guided(tuned, base, 2.0, plausibility=0.1)
    tokens = tuned.primers[0]
    ours, everything, own = (g.teacher_forced_logits(tokens) for g in (kept, free, tuned))
    for part in ("step", "pitch", "duration", "velocity"):
        plausible = own[part] >= own[part].max(axis=1, keepdims=True) + np.log(0.1)
        assert plausible.any(axis=1).all() and (~plausible).any(), part
        np.testing.assert_allclose(ours[part][plausible], everything[part][plausible], rtol=1e-6, err_msg=part)
        assert (ours[part][~plausible] <= everything[part][~plausible] - guidance.IMPLAUSIBLE / 2).all(), part
    sampling, rng = melody.Sampling.of(1.0, 1.0), np.random.default_rng(0)
    state = kept.initial_state()
    for token in tokens:
        h, state = kept.step(token, state)
    hidden = kept.head_inputs(h)
    logits = kept.part_logits("pitch", hidden, {"step": 3})
    plausible = np.flatnonzero(logits > logits.max() - guidance.IMPLAUSIBLE / 2)
    drawn = {sampling.draw("pitch", logits, rng) for _ in range(300)}
    assert drawn <= set(plausible.tolist()) and len(drawn) > 1
    guard = np.zeros(128)
    guard[plausible] = -np.inf  # the guards forbid every plausible pitch: an implausible one is drawn
    assert sampling.draw("pitch", logits + guard, rng) not in set(plausible.tolist())
    with pytest.raises(EmolibError, match="plausibility must be in"):
        guidance.Guided(tuned, base, 2.0, plausibility=1.0)


def test_guidance_amplifies_what_fine_tuning_changed():
    """A 'fine-tuned' LSTM that likes C a little more than its base: guided, it likes C much more."""
    base = random_generator(seed=3)
    weights = {k: v.copy() for k, v in base.weights.items()}
    weights["pitch/1"][np.arange(128) % 12 == 0] += 0.7
    tuned = melody.MelodyGenerator(weights, base.config, base.primers)

    def share_of_c(gen) -> float:
        pitches = np.concatenate([gen.generate_tokens(20, seed=s)[0][:, 1] for s in range(4)])
        return float(np.mean(pitches % 12 == 0))

    plain, fine, guided = share_of_c(base), share_of_c(tuned), share_of_c(guidance.Guided(tuned, base, 2.0))
    assert plain < fine < guided and guided - fine > fine - plain


def test_generator_guides_against_the_base_the_model_was_fine_tuned_from(tmp_path, monkeypatch):
    for name, seed in (("happy", 1), ("base", 2), ("shipped_base", 3), ("my_base", 4)):
        gen = random_generator(seed=seed)
        melody.save_generator(tmp_path / name, gen.weights, gen.config, gen.primers, ["a.mid"] * 4, name)
    monkeypatch.setattr(melody, "BASE_DIR", tmp_path / "shipped_base")
    guided = guidance.generator("happy", tmp_path)
    assert isinstance(guided, guidance.Guided) and guided.weight == guidance.GUIDANCE
    assert guided.base.path == tmp_path / "base" / melody.BUNDLE_FILE  # base/ beside the model's folder
    (tmp_path / "base" / melody.BUNDLE_FILE).unlink()
    shipped = tmp_path / "shipped_base" / melody.BUNDLE_FILE
    assert guidance.generator("happy", tmp_path / "happy", 1.0).base.path == shipped
    metrics = tmp_path / "happy" / melody.METRICS_FILE
    metrics.write_text(json.dumps({"init": str(tmp_path / "my_base")}))  # what training records
    assert guidance.generator("happy", tmp_path / "happy").base.path == tmp_path / "my_base" / melody.BUNDLE_FILE
    metrics.write_text(json.dumps({"init": None}))  # trained from scratch: nothing to guide against
    assert not isinstance(guidance.generator("happy", tmp_path / "happy"), guidance.Guided)
    plain = guidance.generator("happy", tmp_path / "happy", 0.0)
    assert not isinstance(plain, guidance.Guided) and plain.path == tmp_path / "happy" / melody.BUNDLE_FILE
    with pytest.raises(EmolibError, match="guidance must be >= 0"):
        guidance.generator("happy", tmp_path, -1.0)
    other = random_generator(seed=5, config=replace(SMALL, units=8))  # an older or other architecture
    melody.save_generator(tmp_path / "other", other.weights, other.config, other.primers, ["a.mid"] * 4, "sad")
    with pytest.warns(UserWarning, match="without guidance"):
        assert not isinstance(guidance.generator("sad", tmp_path / "other"), guidance.Guided)
