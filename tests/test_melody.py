"""emolib.melody and melody_train: tokens, the numpy step equal to Keras, sampling, pretraining and
fine-tuning from the base, loading, and the shipped generators' guarantees."""
import io
import json
from dataclasses import replace

import numpy as np
import pretty_midi
import pytest

from emolib import MUSIC_EMOTIONS, guards, melody, melody_train, notes, sampling
from emolib.errors import EmolibError
from tests.conftest import run_cli
from tests.mididata import (
    SMALL,
    chord_moves,
    make_dataset,
    pitch_runs,
    random_generator,
    random_weights,
    stuck_generator,
)

FAST = melody_train.TrainConfig(epochs=2, minutes=None, seq_length=32, batch_size=8, learning_rate=3e-3, patience=5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny base pretrained by the real code path, and a 'happy' LSTM fine-tuned from it."""
    root = tmp_path_factory.mktemp("melody")
    midi, pop = make_dataset(root)
    base = melody_train.pretrain(pop, midi, root / "base", config=FAST, model_config=SMALL)
    tuned = melody_train.fine_tune(midi, root / "models", "happy", base=root / "base", config=FAST)
    return {"root": root, "midi": midi, "pop": pop, "base": base, "tuned": tuned}


# --------------------------------------------------------------------------- numpy step = Keras
def test_numpy_step_matches_the_keras_model_on_every_part():
    import keras

    model = melody.build_model(SMALL)
    keras.utils.set_random_seed(3)
    gen = melody.MelodyGenerator(melody.export_weights(model), SMALL, np.zeros((1, 4, 4), np.int64))
    tokens = notes.tokenize({"pitch": np.arange(50, 90), "step": np.linspace(0, 1.2, 40),
                             "duration": np.linspace(0.05, 3, 40), "velocity": np.arange(40, 120, 2)})
    ours = gen.teacher_forced_logits(tokens)
    x = {"notes": tokens[None, :-1], "next": tokens[None, 1:, :3]}
    theirs = gen.model.predict(x, verbose=0)  # the Keras model of the weights the int8 rows stand for
    trained = model.predict(x, verbose=0)  # the model before its rows were rounded to int8
    for part in notes.TOKEN_FIELDS:
        assert ours[part].shape == theirs[part][0].shape
        np.testing.assert_allclose(ours[part], theirs[part][0], atol=1e-4, err_msg=part)
        np.testing.assert_allclose(ours[part], trained[part][0], atol=2e-3, err_msg=part)


def test_numpy_step_matches_the_keras_model_with_the_held_key_input():
    """Told which keys are surely down (guards.down_before), the numpy step and Keras agree."""
    config = replace(SMALL, held_input=True)
    model = melody.set_weights(melody.build_model(config), random_weights(config, seed=2))
    gen = melody.MelodyGenerator(melody.export_weights(model), config, np.zeros((1, 4, 4), np.int64))
    tokens = notes.tokenize({"pitch": np.tile([48, 55, 60, 64, 67, 72], 8),
                             "step": np.tile([0.3, 0, 0.2, 0.2, 0.4, 0.1], 8),
                             "duration": np.tile([2.0, 1.5, 0.2, 0.5, 0.3, 1.0], 8), "velocity": np.full(48, 80)})
    x, _ = melody_train._inputs(tokens[None], held=True)
    assert x["held"].sum(-1).max() >= 2 and (x["held"][0, :, 48] > 0).any()  # keys down, the long bass among them
    theirs, trained = gen.model.predict(x, verbose=0), model.predict(x, verbose=0)
    ours = gen.teacher_forced_logits(tokens)
    for part in notes.TOKEN_FIELDS:
        np.testing.assert_allclose(ours[part], theirs[part][0], atol=1e-4, err_msg=part)
        np.testing.assert_allclose(ours[part], trained[part][0], atol=2e-3, err_msg=part)
    plain = melody.MelodyGenerator(gen.weights, replace(config, held_input=False), gen.primers)
    lower = plain.teacher_forced_logits(tokens)["pitch"] - ours["pitch"]
    down = x["held"][0] > 0
    assert lower[down].mean() > 2.0 and abs(lower[~down].mean()) < 1.0  # held keys start HELD_PRIOR nats lower


def test_a_piece_starts_from_its_primers_stored_state_as_if_run_afresh():
    gen = random_generator(seed=5)
    first = gen.generate_tokens(10, seed=3)[0]
    assert gen._primed  # the primer's state is kept ...
    assert np.array_equal(gen.generate_tokens(10, seed=3)[0], first)  # ... and gives the same piece
    fresh = random_generator(seed=5)
    _, state = fresh.primed(fresh.primers[1])  # not kept without an index
    assert not fresh._primed
    for (a, b), (c, d) in zip(state, gen.primed(gen.primers[1], 1)[1]):
        assert np.array_equal(a, c) and np.array_equal(b, d)


def test_bundle_round_trip_keeps_weights_and_builds_the_same_keras_model(tmp_path):
    gen = random_generator(seed=4)
    melody.save_generator(tmp_path, gen.weights, gen.config, gen.primers, ["a.mid"] * len(gen.primers), "sad")
    back = melody.load_generator(None, tmp_path)
    assert back.emotion == "sad" and back.config == gen.config and back.primer_sources[0] == "a.mid"
    for k, v in gen.weights.items():
        np.testing.assert_allclose(back.weights[k], v, atol=2e-3 * max(1.0, float(np.abs(v).max())))  # float16
    tokens = back.primers[0]
    keras_out = back.model.predict({"notes": tokens[None, :-1], "next": tokens[None, 1:, :3]}, verbose=0)
    np.testing.assert_allclose(back.teacher_forced_logits(tokens)["pitch"], keras_out["pitch"][0], atol=1e-4)


def test_a_bundle_from_before_the_chord_order_option_reads_chords_as_played(tmp_path):
    gen = random_generator(seed=4)
    assert gen.config.top_first  # new models list chords melody first
    melody.save_generator(tmp_path, gen.weights, gen.config, gen.primers, ["a.mid"] * len(gen.primers), "sad")
    bundle = dict(np.load(tmp_path / melody.BUNDLE_FILE))
    config = json.loads(str(bundle["config"]))
    del config["top_first"]
    bundle["config"] = np.array(json.dumps(config))
    np.savez(tmp_path / "old.npz", **bundle)
    assert melody.load_generator(None, tmp_path / "old.npz").config.top_first is False


# --------------------------------------------------------------------------- sampling
def test_sampling_temperature_zero_top_p_and_bad_values():
    rng = np.random.default_rng(0)
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    greedy = melody.Sampling.of(0.0)
    assert {greedy.draw("pitch", logits, rng) for _ in range(20)} == {0}
    nucleus = melody.Sampling.of(1.0, top_p=0.7)  # 0.5 + 0.3 >= 0.7: only the first two
    assert {nucleus.draw("pitch", logits, rng) for _ in range(300)} == {0, 1}
    free = melody.Sampling.of(1.0, top_p=1.0)
    assert {free.draw("pitch", logits, rng) for _ in range(2000)} == {0, 1, 2, 3}
    per_part = melody.Sampling.of({"pitch": 0.5}, {"step": 0.9})
    assert per_part.temperature["pitch"] == 0.5 and per_part.temperature["step"] == 1.0
    assert per_part.top_p["step"] == 0.9 and per_part.top_p["pitch"] == sampling.TOP_P["pitch"] == 0.9
    assert melody.Sampling.of().top_p == dict(sampling.TOP_P) == melody.Sampling().top_p  # the tuned defaults
    assert sampling.TOP_P["step"] == 0.95 and melody.Sampling.of(1.0, 0.95).top_p["pitch"] == 0.95
    for bad in ({"temperature": -1}, {"top_p": 0.0}, {"top_p": 1.5}, {"temperature": {"tempo": 1.0}}):
        with pytest.raises(EmolibError):
            melody.Sampling.of(**bad)


def test_the_compiled_draw_is_the_nucleus_as_numpy_defines_it():
    """sampling._nucleus (plain loops) against the definition in numpy: the likeliest values first,
    ties in index order, up to the first holding top_p; the draw at u within them."""
    def nucleus(z, top_p, u):
        p = np.exp(z - z.max())
        order = np.argsort(-p, kind="stable") if top_p < 1 else np.arange(len(p))
        cum = np.cumsum(p[order])
        k = int(np.searchsorted(cum, top_p * cum[-1])) + 1 if top_p < 1 else len(p)
        return int(order[min(int(np.searchsorted(cum[:k], u * cum[k - 1], side="right")), k - 1)])

    rng = np.random.default_rng(3)
    for i in range(3000):
        z = rng.normal(size=int(rng.choice([16, 49, 128]))) * rng.uniform(0.5, 4)
        if i % 2:
            z = z.astype(np.float32).astype(np.float64)  # as the heads' logits arrive (Sampling.draw widens them)
        if i % 3 == 0:
            z[rng.random(len(z)) < 0.5] = -np.inf  # values the guards forbid
        if i % 5 == 0:
            z = np.round(z)  # ties
        top_p, u = float(rng.choice([0.3, 0.9, 0.95, 1.0])), (0.0 if i % 11 == 0 else rng.random())
        assert sampling._nucleus(z, top_p, u) == nucleus(z, top_p, u), (i, top_p, u)


def test_generation_is_seeded_fills_the_time_and_never_includes_the_primer():
    gen = random_generator()
    a, b = gen.generate_notes(20, seed=5), gen.generate_notes(20, seed=5)
    assert a.equals(b) and not a.equals(gen.generate_notes(20, seed=6))
    assert a["start"].iloc[0] == 0.0 and a["end"].max() == pytest.approx(20.0)
    assert (a["duration"] > 0).all() and a["pitch"].between(21, 108).all()
    with pytest.raises(EmolibError, match="seconds must be positive"):
        gen.generate_notes(0)


# --------------------------------------------------------------------------- training
def test_pretraining_and_fine_tuning_from_the_base(trained):
    base, tuned, root = trained["base"], trained["tuned"], trained["root"]
    assert base["data"]["pop909_train"] + base["data"]["pop909_val"] == 6
    assert base["epochs_run"] == 2 and base["val"]["nll"] < base["before"]["nll"]  # it learned something
    assert set(base["val"]) >= {"nll", "nll_step", "nll_pitch", "nll_duration", "nll_velocity", "pitch_top1",
                                "pitch_top5"}
    assert (root / "base" / "generator.npz").is_file() and (root / "base" / "loss.png").is_file()
    # fine-tuning starts from the base, told which keys are down (held_input, by default): its first
    # score is the base's, held keys HELD_PRIOR nats less likely, on the emotion's validation songs
    assert tuned["init"] == str(root / "base") and tuned["emotion"] == "happy"
    base_gen = melody.load_generator(None, root / "base")
    assert base_gen.config == SMALL  # pretrained without it (SMALL)
    seqs = melody_train.sequences(melody_train.load_songs(
        melody_train.labelled_split(trained["midi"], "happy")["val"])[0], FAST.seq_length)
    start = melody.set_weights(melody.build_model(replace(SMALL, held_input=True)), base_gen.weights)
    assert melody_train.evaluate(start, seqs)["nll"] == pytest.approx(tuned["before"]["nll"], abs=1e-3)
    assert tuned["val"]["nll"] <= tuned["before"]["nll"] + 1e-6
    assert "broken.mid" in json.dumps(tuned["data"]["skipped"])
    gen = melody.load_generator("happy", root / "models")
    prior = np.diag(gen.weights["pitch_held/0"]) * melody.HELD_SCALE
    assert np.median(prior) == pytest.approx(-melody.HELD_PRIOR, abs=0.5)
    assert gen.config == replace(SMALL, held_input=True) and gen.primers.shape[1:] == (melody_train.PRIMER_NOTES, 4)
    assert all(s.startswith("emopia_Q1_") for s in gen.primer_sources)
    assert not any(np.array_equal(gen.weights[k], base_gen.weights[k]) for k in ("lstm_0/1", "pitch/0"))


def test_pretraining_goes_on_from_a_base_and_can_add_the_held_key_input(trained, tmp_path):
    root = trained["root"]
    more = melody_train.pretrain(trained["pop"], trained["midi"], tmp_path / "base", config=FAST, init=root / "base",
                                 model_config=melody.ModelConfig(held_input=True))
    gen = melody.load_generator(None, tmp_path / "base")
    assert gen.config == replace(SMALL, held_input=True) and more["init"] == str(root / "base")
    assert more["val"]["nll"] <= more["before"]["nll"] + 1e-6 < trained["base"]["before"]["nll"]  # not from scratch
    tuned = melody_train.fine_tune(trained["midi"], tmp_path / "models", "sad", base=tmp_path / "base", config=FAST)
    assert tuned["init"] == str(tmp_path / "base") and tuned["val"]["nll"] <= tuned["before"]["nll"] + 1e-6
    assert melody.load_generator("sad", tmp_path / "models").config == gen.config
    melody_train.fine_tune(trained["midi"], tmp_path / "plain", "sad", base=tmp_path / "base", config=FAST,
                           model_config=melody.ModelConfig(held_input=False))  # --no-held-input drops it
    assert melody.load_generator("sad", tmp_path / "plain").config == SMALL


def test_fine_tuning_without_the_held_key_input_keeps_the_bases_architecture(trained, tmp_path):
    root = trained["root"]
    plain = melody_train.fine_tune(trained["midi"], tmp_path, "happy", base=root / "base", config=FAST,
                                   model_config=melody.ModelConfig(held_input=False))
    gen = melody.load_generator("happy", tmp_path)
    assert gen.config == SMALL and plain["model_config"]["held_input"] is False and "pitch_held/0" not in gen.weights
    seqs = melody_train.sequences(melody_train.load_songs(
        melody_train.labelled_split(trained["midi"], "happy")["val"])[0], FAST.seq_length)
    base_gen = melody.load_generator(None, root / "base")
    assert melody_train.evaluate(base_gen.model, seqs)["nll"] == pytest.approx(plain["before"]["nll"], abs=1e-3)
    assert plain["before"]["nll"] != pytest.approx(trained["tuned"]["before"]["nll"], abs=1e-3)
    table = gen.generate_notes(20, seed=1)
    assert len(table) >= 30 and table["pitch"].between(21, 108).all()


def test_training_data_is_split_by_song_and_the_held_out_songs_never_train(trained):
    split = melody_train.labelled_split(trained["midi"], "happy")
    songs = {part: {notes.song_id(f) for f in files} for part, files in split.items()}
    assert not songs["train"] & songs["val"] and not songs["train"] & songs["test"] and not songs["val"] & songs["test"]
    assert songs["val"] and songs["test"]
    readable = [f for e in MUSIC_EMOTIONS for f in melody_train.labelled_split(trained["midi"], e)["train"]
                if not f.endswith("broken.mid")]
    assert trained["base"]["data"]["train_songs"] == 5 + len(readable)  # POP909 minus its validation song


def test_a_key_frame_model_trains_at_home_and_plays_in_a_key_drawn_per_piece(tmp_path):
    import pandas as pd
    pattern = np.array([60, 64, 67, 72, 67, 64, 62, 65, 69, 71, 67, 60])  # C major, tonic held longest
    durations = np.tile([1.0, 0.5, 0.5, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1.0], 6)

    def song(shift: int) -> pd.DataFrame:
        start = np.r_[0.0, np.cumsum(durations)[:-1]]
        return pd.DataFrame({"pitch": np.tile(pattern, 6) + shift, "step": np.diff(start, prepend=0.0),
                             "duration": durations, "start": start, "end": start + durations,
                             "velocity": np.full(len(durations), 80)})

    songs = {f"emopia_Q1_s{k}_0.mid": song(k - 5) for k in range(12)}  # every key
    metrics = melody_train.train(songs, {"emopia_Q1_v_0.mid": song(3)}, tmp_path / "base", config=FAST,
                                 model_config=replace(SMALL, key_frame=True))
    gen = melody.load_generator(None, tmp_path / "base")
    assert gen.config.key_frame and metrics["config"]["transpose"] == [0, 0]  # never transposed out of it
    assert set(np.unique(gen.primers[..., 1] % 12)) <= {0, 2, 4, 5, 7, 9, 11}  # every primer at home, in C
    shifts = set()
    for seed in range(4, 20):
        home, piece = gen.generate_notes(10, seed=seed, in_frame=True), gen.generate_notes(10, seed=seed)
        moved = piece["pitch"] - home["pitch"]
        assert piece.drop(columns="pitch").equals(home.drop(columns="pitch")) and (moved == moved.iloc[0]).all()
        assert piece["pitch"].between(notes.PIANO_LOW, notes.PIANO_HIGH).all()
        shifts.add(int(moved.iloc[0]))
    assert len(shifts) >= 4 and shifts <= set(range(-5, 7))  # pieces come in many keys
    # what is fine-tuned from it stays in the frame, even when not asked
    tuned = melody_train.train(songs, {"emopia_Q1_v_0.mid": song(3)}, tmp_path / "tuned", config=FAST,
                               model_config=SMALL, init=tmp_path / "base")
    assert tuned["model_config"]["key_frame"] and tuned["config"]["transpose"] == [0, 0]


def test_sequences_pad_short_songs_and_augment_within_bounds():
    table = notes.detokenize(np.array([[0, 60, 10, 8]] * 5))
    seqs = melody_train.sequences({"a": table}, seq_length=8)
    assert seqs.shape == (1, 9, 4) and (seqs[0, 5:] == -1).all() and (seqs[0, :5, 1] == 60).all()
    config = melody_train.TrainConfig(transpose=(-5, 6), tempo=0.1)
    rng = np.random.default_rng(0)
    shifts = {int(melody_train.sequences({"a": table}, 8, rng, config)[0, 0, 1]) - 60 for _ in range(200)}
    assert shifts == set(range(-5, 7))


def test_own_draws_swap_real_input_notes_for_the_models_draws_and_keep_the_targets():
    model = melody.build_model(SMALL)
    weights = melody.export_weights(model)
    weights["pitch/0"][:] = 0.0
    weights["pitch/1"][:] = -50.0
    weights["pitch/1"][100] = 50.0  # the model always draws pitch 100, which no input note has
    melody.set_weights(model, weights)
    seqs = melody_train.sequences({"a": notes.detokenize(np.array([[2, 60 + k % 12, 10, 8] for k in range(40)])),
                                   "b": notes.detokenize(np.array([[2, 50, 10, 8]] * 20))}, seq_length=32)
    x, y = melody_train._inputs(seqs)
    rng = np.random.default_rng(0)
    assert np.array_equal(melody_train.own_draws(model, x, y, 0.0, rng)["notes"], x["notes"])
    mixed = melody_train.own_draws(model, x, y, 0.5, rng)
    swapped = mixed["notes"][..., 1] == 100
    real = np.zeros_like(swapped)
    real[:, 1:] = y["pitch"][:, :-1] >= 0  # input note i is real when the target before it is
    assert not swapped[:, 0].any() and not (swapped & ~real).any()  # never the first note, never padding
    assert 0.35 < swapped[real].mean() < 0.65
    assert np.array_equal(mixed["next"], x["next"]) and np.array_equal(mixed["notes"][~swapped], x["notes"][~swapped])
    # told which keys are down, a model reads the keys of the notes it now reads: the drawn pitch 100, not 60
    held_x, held_y = melody_train._inputs(seqs, held=True)
    assert held_x["held"][..., 100].max() == 0 and held_x["held"][..., 50].max() == 1
    told = melody.set_weights(melody.build_model(replace(SMALL, held_input=True)), weights)
    drawn = melody_train.own_draws(told, held_x, held_y, 1.0, np.random.default_rng(1))
    assert drawn["held"][..., 100].max() == 1 and drawn["held"][..., 50].sum() < held_x["held"][..., 50].sum()


def test_fine_tuning_on_its_own_draws_runs_and_records_the_share(trained, tmp_path):
    config = melody_train.config_from(FAST, own_draws=0.3, epochs=1)
    tuned = melody_train.fine_tune(trained["midi"], tmp_path, "sad", base=trained["root"] / "base", config=config)
    assert tuned["config"]["own_draws"] == 0.3 and tuned["epochs_run"] == 1
    assert melody.load_generator("sad", tmp_path).config == replace(SMALL, held_input=True)
    with pytest.raises(EmolibError, match="own_draws is a share"):
        melody_train.fine_tune(trained["midi"], tmp_path, "sad", base=trained["root"] / "base",
                               config=melody_train.config_from(FAST, own_draws=1.5))


def test_cli_pretrain_and_train_record_their_commands(trained, tmp_path):
    res = run_cli("melody", "train", "--midi", str(trained["midi"]), "--out", str(tmp_path), "--emotions", "sad",
                  "--base", str(trained["root"] / "base"), "--epochs", "1", "--seq-length", "32", "--minutes", "0")
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout.splitlines()[-1])
    assert row["emotion"] == "sad" and row["epochs_run"] == 1 and row["config"]["minutes"] is None
    assert "melody train" in row["command"] and "--emotions sad" in row["command"]
    assert (tmp_path / "sad" / "generator.npz").is_file()
    # the architecture is a flag too: a tiny base with independent heads (the note-scheme comparison's other arm)
    res = run_cli("melody", "pretrain", "--pretrain", str(trained["pop"]), "--midi", str(trained["midi"]),
                  "--out", str(tmp_path / "base"), "--epochs", "1", "--minutes", "0", "--seq-length", "32",
                  "--units", "16", "--embed", "4", "8", "4", "4", "--head-units", "8", "--no-factorised")
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout.splitlines()[-1])
    assert "melody pretrain" in row["command"] and "--no-factorised" in row["command"]
    assert row["model_config"] == {"units": 16, "layers": 2, "embed": [4, 8, 4, 4], "head_units": 8, "dropout": 0.1,
                                   "factorised": False, "top_first": True, "key_frame": False, "held_input": True}
    assert melody.load_generator(None, tmp_path / "base").config.factorised is False
    # a melody-first base (the default) hands its chord order to what is fine-tuned from it
    tuned = melody_train.fine_tune(trained["midi"], tmp_path / "models", "sad", base=tmp_path / "base", config=FAST)
    gen = melody.load_generator("sad", tmp_path / "models")
    assert gen.config.top_first and tuned["model_config"]["top_first"]
    assert (chord_moves(gen.primers) <= 0).all() and (gen.primers[:, 1:, 0] == 0).any()  # chords high to low
    val = melody_train.load_songs(melody_train.labelled_split(trained["midi"], "sad")["val"])[0]
    scores = melody_train.held_out_scores(tmp_path / "models", "sad", trained["midi"], part="val", seq_length=32)
    assert scores["nll"] == pytest.approx(tuned["val"]["nll"], abs=1e-3)
    bass_first = melody_train.sequences(val, 32, top_first=False)
    assert melody_train.evaluate(gen.model, bass_first)["nll"] != pytest.approx(scores["nll"])


def test_cli_melody_train_on_a_missing_folder_is_one_clear_line(tmp_path):
    res = run_cli("melody", "train", "--midi", str(tmp_path / "none"), "--out", str(tmp_path / "o"))
    assert res.returncode == 1 and res.stdout == ""
    assert "MIDI folder not found" in res.stderr and str(tmp_path / "none") in res.stderr


def test_bad_model_files_fail_with_the_file_named(tmp_path):
    with pytest.raises(EmolibError, match="melody model not found"):
        melody.load_generator("happy", path=tmp_path)
    (tmp_path / "generator.npz").write_bytes(b"garbage")
    with pytest.raises(EmolibError, match="cannot read the melody model") as err:
        melody.load_generator("happy", path=tmp_path)
    assert str(tmp_path / "generator.npz") in str(err.value)
    np.savez(tmp_path / "generator.npz", primers=np.zeros((1, 4, 4)))
    with pytest.raises(EmolibError, match="not a note-LSTM bundle"):
        melody.load_generator("happy", path=tmp_path)
    with pytest.raises(EmolibError, match="unknown emotion"):
        melody.load_generator("joyful")


# --------------------------------------------------------------------------- shipped models
@pytest.mark.parametrize("emotion", MUSIC_EMOTIONS)
def test_shipped_generator_meets_the_guarantees(emotion):
    """Valid over many seeds and temperatures: parses, 36-44 s for 40 s, >= 60 notes, >= 8 pitches, 21-108."""
    gen = melody.load_generator(emotion)
    assert gen is melody.load_generator(emotion)  # cached per process
    meta = json.loads((melody.SHIPPED_DIR / emotion / "metrics.json").read_text())
    assert "melody train" in meta["command"] and meta["emotion"] == emotion and meta["init"].endswith("base")
    assert sum(p.stat().st_size for p in (melody.SHIPPED_DIR / emotion).iterdir()) < 8_000_000
    for seed in range(8):
        for temperature in (0.8, 1.0, 1.2):
            for top_p in (0.9, 1.0):
                midi = pretty_midi.PrettyMIDI(io.BytesIO(notes.midi_bytes(
                    gen.generate(seconds=40, temperature=temperature, top_p=top_p, seed=seed))))
                ns = midi.instruments[0].notes
                assert len(ns) >= 60, (seed, temperature, len(ns))
                assert 36 <= midi.get_end_time() <= 44
                assert min(n.end - n.start for n in ns) > 0
                assert len({n.pitch for n in ns}) >= 8
                assert min(n.pitch for n in ns) >= 21 and max(n.pitch for n in ns) <= 108


def test_shipped_base_is_the_pretrained_one():
    meta = json.loads((melody.BASE_DIR / "metrics.json").read_text())
    assert "melody pretrain" in meta["command"] and meta["data"]["pop909_train"] > 800
    base = melody.load_generator("base")
    for emotion in MUSIC_EMOTIONS:
        assert melody.load_generator(emotion).config == base.config


def test_cli_generate_writes_pieces_and_json_lines(tmp_path):
    res = run_cli("generate", "--emotion", "sad", "--count", "2", "--out", str(tmp_path), "--seed", "7",
                  "--seconds", "30", "--temperature", "0.9", "--top-p", "0.9", "--steering", "0")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["path"].rsplit("/", 1)[-1] for r in rows] == ["sad_0.mid", "sad_1.mid"]
    for r in rows:
        assert r["notes"] >= 45 and abs(r["seconds"] - 30) <= 3 and r["distinct_pitches"] >= 8
        assert pretty_midi.PrettyMIDI(r["path"]).get_end_time() == pytest.approx(r["seconds"], abs=0.01)
    def pitches(repeat: str) -> list[int]:
        res = run_cli("generate", "--emotion", "sad", "--out", str(tmp_path / repeat), "--seed", "7",
                      "--seconds", "30", "--steering", "0", "--repeat", repeat)
        assert res.returncode == 0, res.stderr
        return [n.pitch for n in pretty_midi.PrettyMIDI(json.loads(res.stdout)["path"]).instruments[0].notes]

    assert pitches("1") != pitches("0")  # every phrase played again, or none
    bad = run_cli("generate", "--emotion", "sad", "--out", str(tmp_path), "--repeat", "1.5")
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "emolib: error: repeat is a probability: it must be in [0, 1], got 1.5"]


@pytest.mark.data
def test_shipped_generator_scores_what_its_metrics_record_on_the_real_validation_songs(shared):
    """The recorded validation NLL is reproducible from the shipped file and the real data (split by song)."""
    meta = json.loads((melody.SHIPPED_DIR / "sad" / "metrics.json").read_text())
    scores = melody_train.held_out_scores(None, "sad", shared / "music" / "midi", part="val",
                                          seed=meta["config"]["seed"], seq_length=meta["config"]["seq_length"])
    assert scores["nll"] == pytest.approx(meta["val"]["nll"], abs=1e-3)
    assert scores["notes"] == meta["val"]["notes"]
    assert scores["nll"] < meta["before"]["nll"]  # fine-tuning improved on the base for this emotion


def test_from_half_way_a_piece_plays_at_least_min_pitches_pitches():
    gen = random_generator(seed=6)
    gen.weights["pitch/1"][:] = -10.0
    gen.weights["pitch/1"][[50, 52, 55, 57]] = 10.0  # a model that only knows four pitches
    four = melody.MelodyGenerator(gen.weights, gen.config, gen.primers)
    for seed in range(3):
        tokens, onsets = four.generate_tokens(40, seed=seed)
        assert len(set(tokens[onsets < 20, 1])) < guards.MIN_PITCHES  # the guard waits for half way ...
        assert len(set(tokens[:, 1])) >= guards.MIN_PITCHES  # ... then brings in new pitches
        short, _ = four.generate_tokens(10, seed=seed)  # a short blend section needs one pitch per 5 s
        assert set(short[:, 1]) <= {50, 52, 55, 57}


def test_a_piece_never_loops_on_two_pitches_for_more_than_twice_max_repeats_notes():
    gen = random_generator(seed=6)
    gen.weights["pitch/1"][:] = -10.0
    gen.weights["pitch/1"][[38, 50]] = 10.0  # a model that only knows an octave: D2 and D3
    octave = melody.MelodyGenerator(gen.weights, gen.config, gen.primers)
    for seed in range(3):
        pitches = octave.generate_tokens(40, seed=seed)[0][:, 1]
        windows = np.lib.stride_tricks.sliding_window_view(pitches, 2 * guards.MAX_REPEATS + 1)
        assert all(len(set(w)) > 2 for w in windows), seed
        assert np.isin(pitches, [38, 50]).mean() > 0.8  # the model still plays what it knows


def test_guards_keep_slow_or_stuck_pieces_valid():
    """A piece behind 1.5 notes/s may not take long steps; a pitch repeated 8 times is masked."""
    slow = [np.array([40, 60, 20, 8])] * 10  # 10 notes in 20 s of a 40 s piece: behind 60 notes
    masks = guards.masks(slow, time=20.0, seconds=40.0)
    allowed = notes.STEP_VALUES[np.isfinite(masks["step"])]
    assert allowed.max() <= 20.0 / 50 and allowed.min() == 0
    assert masks["pitch"][60] == -np.inf and np.isfinite(masks["pitch"][61])
    assert guards.masks([*slow[:3], np.array([10, 62, 20, 8])], time=0.5, seconds=40.0) is None  # on pace, varied
    table = stuck_generator().generate_notes(40, seed=1)  # a model that always waits 2 s, on one pitch
    assert len(table) >= 60 and table["pitch"].nunique() >= 2
    assert pitch_runs(table["pitch"]).max() <= guards.MAX_REPEATS


def test_with_held_keys_a_key_still_held_is_not_struck_again(monkeypatch):
    """A model that strikes C4 every 0.2 s with 2 s notes: a real file never holds a key while striking
    it again, so with HELD_KEYS C4 comes back only once its note has ended, and other pitches fill the
    gaps; without (the default), C4 is struck again and again."""
    gen = random_generator(seed=7)
    step, duration = int(np.searchsorted(notes.STEP_EDGES, 0.2)), int(np.searchsorted(notes.DURATION_EDGES, 2.0))
    for part, value in (("step", step), ("pitch", 60), ("duration", duration)):
        gen.weights[f"{part}/1"][:] = -10.0
        gen.weights[f"{part}/1"][value] = 10.0
    gen.weights["pitch/1"][[62, 64, 65, 67]] = 6.0  # what else it knows, much less
    eager = melody.MelodyGenerator(gen.weights, gen.config, gen.primers)
    assert (eager.generate_notes(20, seed=0)["pitch"] == 60).mean() > 0.8
    monkeypatch.setattr(guards, "HELD_KEYS", True)
    for seed in range(3):
        table = eager.generate_notes(20, seed=seed)
        c4 = table[table["pitch"] == 60]
        assert len(c4) >= 5 and (table["pitch"] != 60).sum() >= 30, seed  # C4 whenever it may, others between
        gaps = np.diff(c4["start"].to_numpy())
        assert (gaps >= 0.8 * c4["duration"].to_numpy()[:-1]).all(), (seed, gaps.min())  # never while held
    keys = guards.Keys()
    played = np.array([step, 60, duration, 8])
    assert not keys.strike(played, first=True)
    held = keys.held()
    assert guards.allowed(np.array([step, 61, duration, 8]), None, held) and not guards.allowed(played, None, held)
    assert guards.allowed(np.array([47, 60, duration, 8]), None, held)  # 2 s later it has been released
    assert guards.held_pitches(held, step)[60] == -np.inf and (guards.held_pitches(held, 47) == 0).all()
    assert keys.strike(np.array([step, 60, 1, 8]))  # struck while down: it ends the long note ...
    assert not keys.strike(np.array([step, 60, 1, 8]))  # ... so 0.2 s later the short one has ended


def test_a_model_told_which_keys_are_down_leaves_them_alone():
    """The C4-hungry model of the test above, with the held-key input: strongly against striking a held
    key, it waits for C4's release as the HELD_KEYS rule would make it; with that input at zero it does not."""
    config = replace(SMALL, held_input=True)
    w = random_weights(config, seed=7)
    step, duration = int(np.searchsorted(notes.STEP_EDGES, 0.2)), int(np.searchsorted(notes.DURATION_EDGES, 2.0))
    for part, value in (("step", step), ("pitch", 60), ("duration", duration)):
        w[f"{part}/1"][:] = -10.0
        w[f"{part}/1"][value] = 10.0
    w["pitch/1"][[62, 64, 65, 67]] = 6.0
    w["pitch_held/0"] = -40.0 / melody.HELD_SCALE * np.eye(128, dtype=np.float32)  # far under the -10 of the rest
    primers = random_generator(seed=7).primers
    told = melody.MelodyGenerator(w, config, primers)
    blind = melody.MelodyGenerator({**w, "pitch_held/0": 0 * w["pitch_held/0"],
                                    "pitch_from_held/0": 0 * w["pitch_from_held/0"]}, config, primers)
    assert (blind.generate_notes(20, seed=0)["pitch"] == 60).mean() > 0.8
    for seed in range(3):
        tokens = told.generate_tokens(20, seed=seed)[0]
        keys = guards.Keys()
        assert not any(keys.strike(t, first=k == 0) for k, t in enumerate(tokens)), seed
        assert (tokens[:, 1] == 60).sum() >= 5 and (tokens[:, 1] != 60).sum() >= 30, seed


def test_when_every_pitch_left_is_held_one_is_still_drawn(monkeypatch):
    """The held-key rule gives way when it would leave no pitch at all (with or without other bans)."""
    monkeypatch.setattr(guards, "HELD_KEYS", True)
    gen = random_generator(seed=3)
    state = gen.initial_state()
    for token in gen.primers[0]:
        h, state = gen.step(token, state)
    every = np.full(128, 10.0)  # every key down for 10 s
    sampling, rng = melody.Sampling.of(1.0, 0.95), np.random.default_rng(0)
    for guard in (None, {"pitch": np.where(np.arange(128) == 60, -np.inf, 0.0)}):
        pitches = {int(gen.sample_note(h, rng, sampling, guard=guard, held=every)[1]) for _ in range(50)}
        assert pitches and all(notes.PIANO_LOW <= p <= notes.PIANO_HIGH for p in pitches)
        assert guard is None or 60 not in pitches
