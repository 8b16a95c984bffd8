"""Training the note LSTMs: pretrain one base on POP909 + the labelled clips, fine-tune one per emotion.

Data: every MIDI becomes a note table (``emolib.notes``), and every epoch re-tokenises each
training song with a random transposition (-5..+6 semitones) and a mild tempo change (+-10%),
then cuts it into sequences of ``seq_length`` notes at a random offset. The model learns the next
note at every position (teacher forcing). Songs are split by song (``notes.split_songs``): the
labelled validation and test songs never enter training, pretraining included.

A run keeps the weights with the best validation negative log-likelihood per note, stops early
when it stops improving (``patience`` epochs) or when its time budget is spent, follows a
warm-up + cosine learning-rate schedule over that budget, and writes ``generator.npz`` (atomically,
each time validation improves), ``metrics.json`` and ``loss.png``.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emolib import MUSIC_EMOTIONS, guards
from emolib.errors import EmolibError
from emolib.files import atomic_path, write_json
from emolib.melody import (
    BASE_DIR,
    BUNDLE_FILE,
    CURVE_FILE,
    METRICS_FILE,
    ModelConfig,
    build_model,
    export_weights,
    load_generator,
    log_softmax,
    save_generator,
    set_weights,
)
from emolib.notes import TOKEN_FIELDS, VOCAB, in_key_frame, load_folder, midi_files, split_songs, tokenize
from emolib.paths import data_root
from emolib.runs import command_line, get_strategy

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import pandas as pd

__all__ = ["TrainConfig", "Songs", "load_songs", "labelled_split", "sequences", "evaluate", "train",
           "pretrain", "fine_tune", "fine_tune_all", "primer_bank", "plot_history", "default_midi_dir",
           "config_from", "held_out_scores", "own_draws", "PRETRAIN", "FINE_TUNE", "ARCHITECTURE", "PRIMER_NOTES"]

#: Notes per primer window.
PRIMER_NOTES = 48


@dataclass(frozen=True)
class TrainConfig:
    """One training recipe (pretraining and fine-tuning use the same fields, different values)."""

    epochs: int = 200                 # upper bound; early stopping or the time budget usually end sooner
    minutes: float | None = 10.0      # time budget for the fitting (None: no limit)
    seq_length: int = 256             # notes per training sequence
    batch_size: int = 32
    learning_rate: float = 1e-3       # peak; warm-up then cosine decay to 5% over the run
    warmup: float = 0.03              # share of the run spent warming up
    patience: int = 4                 # epochs without a better validation score before stopping
    transpose: tuple[int, int] = (-5, 6)
    tempo: float = 0.1                # tempo change drawn from [1 - tempo, 1 + tempo]
    seed: int = 0
    precision: str = "float32"        # or mixed_bfloat16 (faster on CPUs with bf16 units); saved float32
    strategy: str = "default"
    own_draws: float = 0.0            # share of input notes replaced by the model's own draws (against exposure bias)


#: Recipes used for the shipped models (their exact commands are in each metrics.json).
PRETRAIN = TrainConfig(minutes=80.0, learning_rate=2e-3, patience=6, precision="mixed_bfloat16")
FINE_TUNE = TrainConfig(minutes=8.0, learning_rate=3e-4, warmup=0.05, patience=3)
#: New models' architecture: told which keys are still down (models/melody/README.md, "Keys still held,
#: told to the model"). Fine-tuning takes the rest from its base, and adds or drops only that input.
ARCHITECTURE = ModelConfig(held_input=True)


# =========================================================================== data
Songs = dict  # name -> note table (pandas.DataFrame)


def default_midi_dir() -> Path:
    """The labelled MIDI folder of the data root (``music/midi``)."""
    return data_root() / "music" / "midi"


def load_songs(files: Iterable[str | os.PathLike], min_notes: int = 8) -> tuple[Songs, dict[str, str]]:
    """Note tables of ``files`` (name -> table) and the files skipped with their reason."""
    loaded = load_folder(None, files=list(files), min_notes=min_notes)
    for why in loaded.skipped.values():
        print(f"emolib: skipped {why}", file=sys.stderr, flush=True)
    return loaded.tables, loaded.skipped


def _in_key_frame(songs: Mapping[str, pd.DataFrame]) -> Songs:
    """Every song moved to C major / A minor (``notes.in_key_frame``), for a ``key_frame`` model."""
    return {name: in_key_frame(table) for name, table in songs.items()}


def labelled_split(midi_dir: str | os.PathLike, emotion: str, seed: int = 0, max_files: int | None = None
                   ) -> dict[str, list[str]]:
    """``train`` / ``val`` / ``test`` files of one emotion's folder.

    The split is by song over *every* emotion folder at once: EMOPIA has songs whose clips sit in
    several emotions, and a song held out for one emotion must not train another (nor the base).
    """
    root = Path(midi_dir)
    folders = [e for e in MUSIC_EMOTIONS if (root / e).is_dir()]
    if emotion not in folders:
        folders.append(emotion)  # missing: midi_files names the folder in its error
    files = {e: midi_files(root / e)[:max_files] for e in folders}
    if not files[emotion]:
        raise EmolibError("no MIDI files (*.mid) to train on", root / emotion)
    split = split_songs([f for fs in files.values() for f in fs], seed=seed)
    mine = {str(f) for f in files[emotion]}
    return {part: [f for f in fs if f in mine] for part, fs in split.items()}


def sequences(songs: Mapping[str, pd.DataFrame], seq_length: int, rng: np.random.Generator | None = None,
              config: TrainConfig | None = None, top_first: bool = True) -> np.ndarray:
    """Token sequences (M, seq_length + 1, 4) cut from every song; -1 pads the short ends.

    With ``rng`` (training), each song gets a random transposition and tempo from ``config`` and a
    random first cut; without it (validation) the cuts are fixed and nothing is augmented.
    ``top_first``: the chord order of the model they are for (``ModelConfig.top_first``; default
    melody first, as the shipped models).
    """
    out = []
    for table in songs.values():
        if rng is not None and config is not None:
            tokens = tokenize(table, transpose=int(rng.integers(config.transpose[0], config.transpose[1] + 1)),
                              tempo=float(rng.uniform(1 - config.tempo, 1 + config.tempo)), top_first=top_first)
            offset = int(rng.integers(0, seq_length)) if len(tokens) > seq_length + 1 else 0
        else:
            tokens, offset = tokenize(table, top_first=top_first), 0
        for at in range(offset, max(len(tokens) - 1, 0), seq_length):
            piece = tokens[at:at + seq_length + 1]
            if len(piece) < 2:
                continue
            row = np.full((seq_length + 1, 4), -1, np.int32)
            row[:len(piece)] = piece
            out.append(row)
    if not out:
        return np.zeros((0, seq_length + 1, 4), np.int32)
    return np.stack(out)


def _inputs(seqs: np.ndarray, held: bool = False) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Model inputs and targets of token sequences (padding -> 0 in inputs, -1 in targets); ``held``:
    also the keys surely down at each predicted note's onset (``ModelConfig.held_input``)."""
    given = np.maximum(seqs, 0)
    x = {"notes": given[:, :-1], "next": given[:, 1:, :3]}
    y = {f: seqs[:, 1:, i] for i, f in enumerate(TOKEN_FIELDS)}
    if held:
        x["held"] = _held_masks(x["notes"], y["step"])
    return x, y


def _held_masks(notes: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per sequence and position, the keys surely down at the next note's onset (``guards.down_before``
    of the input notes and the target steps; padding: -1 steps)."""
    return np.stack([guards.down_before(n, s) for n, s in zip(notes, steps)]) if len(notes) else \
        np.zeros((*steps.shape, VOCAB["pitch"]), np.float32)


def _held_input(model: keras.Model) -> bool:
    """Whether ``model`` takes the held-key input (``ModelConfig.held_input``)."""
    return any(getattr(t, "name", "").startswith("held") for t in model.inputs)


def own_draws(model: keras.Model, x: Mapping[str, np.ndarray], y: Mapping[str, np.ndarray], share: float,
              rng: np.random.Generator, batch_size: int = 64) -> dict[str, np.ndarray]:
    """``x`` with ``share`` of its input notes (after the first) replaced by notes the model draws
    there itself, teacher-forced, all positions at once (parallel scheduled sampling, Duckworth et
    al. 2019). The targets stay the real notes, so the model learns to carry on from its own
    slips, which free-running generation feeds it and teacher forcing never does. A stand-in for
    drawing whole notes: each part is drawn given the real earlier parts of its note, at
    temperature 1 with no top-p or piano mask."""
    notes = np.array(x["notes"])
    for at in range(0, len(notes), batch_size):
        rows = slice(at, at + batch_size)
        logits = model.predict_on_batch({k: v[rows] for k, v in x.items()})
        gumbel = {f: -np.log(-np.log(rng.uniform(1e-12, 1.0, np.shape(logits[f])))) for f in TOKEN_FIELDS}
        drawn = np.stack([np.argmax(np.asarray(logits[f], np.float32) + gumbel[f], axis=-1) for f in TOKEN_FIELDS], -1)
        # the prediction at position i is note i + 1; replace only real notes
        swap = (rng.random(drawn.shape[:2]) < share) & (y["pitch"][rows] >= 0)
        block = notes[rows]
        block[:, 1:][swap[:, :-1]] = drawn[:, :-1][swap[:, :-1]]
    if "held" in x:  # the keys down follow the notes the model now reads
        return {**x, "notes": notes, "held": _held_masks(notes, y["step"])}
    return {**x, "notes": notes}


def primer_bank(songs: Mapping[str, pd.DataFrame], count: int = 64, length: int = PRIMER_NOTES, seed: int = 0,
                top_first: bool = True) -> tuple[np.ndarray, list[str]]:
    """Token windows (count, length, 4) drawn round-robin from the songs, and the file each came from."""
    rng = np.random.default_rng(seed)
    names = [n for n in sorted(songs) if len(songs[n]) >= length]
    if not names:
        raise EmolibError(f"no clip has the {length} notes a primer needs")
    order = rng.permutation(len(names))
    windows, sources = [], []
    for k in range(count):
        name = names[order[k % len(names)]]
        tokens = tokenize(songs[name], top_first=top_first)
        at = int(rng.integers(0, len(tokens) - length + 1))
        windows.append(tokens[at:at + length])
        sources.append(Path(name).name)
    return np.stack(windows), sources


# =========================================================================== evaluation
def evaluate(model: keras.Model, seqs: np.ndarray, batch_size: int = 64) -> dict[str, float]:
    """Held-out scores over every real position: negative log-likelihood per note (nats, the sum of
    the four parts), per part, and pitch top-1 / top-5 accuracy (pitch given the true step)."""
    nll = {f: 0.0 for f in TOKEN_FIELDS}
    top1 = top5 = 0.0
    count = 0
    for at in range(0, len(seqs), batch_size):
        x, y = _inputs(seqs[at:at + batch_size], _held_input(model))
        logits = model.predict_on_batch(x)
        mask = y["pitch"] >= 0
        for f in TOKEN_FIELDS:
            lp = log_softmax(np.asarray(logits[f], np.float64))
            picked = np.take_along_axis(lp, np.maximum(y[f], 0)[..., None], axis=-1)[..., 0]
            nll[f] -= float(picked[mask].sum())
        pitch = np.asarray(logits["pitch"])
        best5 = np.argsort(-pitch, axis=-1)[..., :5]
        hit = best5 == y["pitch"][..., None]
        top1 += float(hit[..., 0][mask].sum())
        top5 += float(hit.any(-1)[mask].sum())
        count += int(mask.sum())
    if count == 0:
        raise EmolibError("nothing to evaluate: no held-out notes")
    out = {"nll": sum(nll.values()) / count, **{f"nll_{f}": v / count for f, v in nll.items()},
           "pitch_top1": top1 / count, "pitch_top5": top5 / count, "notes": count}
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in out.items()}


def held_out_scores(model_dir: str | os.PathLike | None, emotion: str, midi_dir: str | os.PathLike | None = None,
                    part: str = "test", seed: int = 0, seq_length: int = 256) -> dict[str, float]:
    """``evaluate`` of an emotion's model (a folder holding ``<emotion>/`` or the shipped ones when
    None) on that emotion's ``part`` songs (``test``: never used to train or choose anything)."""
    midi = Path(midi_dir) if midi_dir is not None else default_midi_dir()
    gen = load_generator(emotion, None if model_dir is None else Path(model_dir))
    songs, _ = load_songs(labelled_split(midi, emotion, seed=seed)[part])
    framed = _in_key_frame(songs) if gen.config.key_frame else songs
    return evaluate(gen.model, sequences(framed, seq_length, top_first=gen.config.top_first))


# =========================================================================== training
def _schedule(config: TrainConfig, progress: float) -> float:
    """Learning rate at ``progress`` (0..1) of the run: linear warm-up, then cosine to 5% of the peak."""
    if progress < config.warmup:
        return config.learning_rate * max(progress / config.warmup, 0.02)
    p = min((progress - config.warmup) / max(1 - config.warmup, 1e-9), 1.0)
    return config.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))


def _progress_callback(config: TrainConfig, clock: dict[str, float], total_steps: int, bar: Any):
    """A Keras callback that sets the learning rate from the run's progress and moves the bar."""
    import keras

    class Progress(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            elapsed = time.time() - clock["start"]
            by_time = elapsed / (config.minutes * 60) if config.minutes else 0.0
            clock["progress"] = max(clock["step"] / total_steps, by_time)
            self.model.optimizer.learning_rate.assign(_schedule(config, min(clock["progress"], 1.0)))

        def on_train_batch_end(self, batch, logs=None):
            clock["step"] += 1
            bar.update(min(round(100 * clock["progress"], 1), 100.0) - bar.n)  # the bar is % of the run
            if logs and "loss" in logs:
                bar.set_postfix(loss=f"{float(logs['loss']):.3f}",
                                lr=f"{float(self.model.optimizer.learning_rate):.1e}")
            if clock["progress"] >= 1.0:
                self.model.stop_training = True

    return Progress()


def _build(config: TrainConfig, model_config: ModelConfig, init: str | os.PathLike | None
           ) -> tuple[keras.Model, ModelConfig]:
    """The compiled model in the run's precision and strategy, with ``init``'s weights when given."""
    import keras

    base = load_generator(None, init) if init is not None else None
    if base is not None:  # the base's architecture, with or without the held-key input as asked; a base in the
        # key frame hands it on, and going on from one (--key-frame) can put a base into it
        model_config = replace(base.config, held_input=model_config.held_input,
                               key_frame=base.config.key_frame or model_config.key_frame)
    keras.utils.set_random_seed(config.seed)
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.precision)
    try:
        with get_strategy(config.strategy).scope():
            model = build_model(model_config, learning_rate=config.learning_rate)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    if base is not None:
        set_weights(model, base.weights)
    return model, model_config


def _fit(model: keras.Model, train_songs: Mapping[str, pd.DataFrame], val: np.ndarray, config: TrainConfig,
         save: Any, label: str, start_nll: float, keep_start: bool, top_first: bool
         ) -> tuple[dict[str, Any], dict[str, list], dict]:
    """Epochs of freshly augmented sequences until early stopping or the budget; ``save(weights)`` on
    every improvement. Returns the best (nll, epoch, weights), the history and the clock."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(config.seed)
    first = sequences(train_songs, config.seq_length, rng, config, top_first)  # epoch 1's sequences also size the run
    steps_per_epoch = max(1, math.ceil(len(first) / config.batch_size))
    clock = {"start": time.time(), "step": 0, "progress": 0.0}
    best: dict[str, Any] = {"nll": start_nll, "epoch": 0, "weights": export_weights(model) if keep_start else None}
    history: dict[str, list] = {"loss": [], "val_nll": [], "lr": [], "seconds": []}
    bad_epochs = 0
    with tqdm(total=100.0, desc=f"training {label}", unit="%", file=sys.stderr, mininterval=2.0,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}") as bar:
        callback = _progress_callback(config, clock, config.epochs * steps_per_epoch, bar)
        for epoch in range(1, config.epochs + 1):
            x, y = _inputs(first if epoch == 1 else sequences(train_songs, config.seq_length, rng, config, top_first),
                           _held_input(model))
            if config.own_draws > 0:
                x = own_draws(model, x, y, config.own_draws, rng)
            with contextlib.redirect_stdout(sys.stderr):
                fit = model.fit(x, y, batch_size=config.batch_size, epochs=1, shuffle=True, verbose=0,
                                callbacks=[callback])
            score = evaluate(model, val)
            history["loss"].append(float(fit.history["loss"][-1]))
            history["val_nll"].append(score["nll"])
            history["lr"].append(float(model.optimizer.learning_rate))
            history["seconds"].append(round(time.time() - clock["start"], 1))
            bar.write(f"epoch {epoch}: train loss {history['loss'][-1]:.3f}, validation nll/note {score['nll']:.3f}"
                      f" (best {min(best['nll'], score['nll']):.3f})", file=sys.stderr)
            if score["nll"] < best["nll"]:
                best, bad_epochs = {"nll": score["nll"], "epoch": epoch, "weights": export_weights(model)}, 0
                save(best["weights"])
            else:
                bad_epochs += 1
            if bad_epochs >= config.patience or clock["progress"] >= 1.0:
                break
    if best["weights"] is None:  # never improved on random weights: keep the last
        best["weights"] = export_weights(model)
    return best, history, clock


def train(train_songs: Mapping[str, pd.DataFrame], val_songs: Mapping[str, pd.DataFrame],
          out_dir: str | os.PathLike, *, config: TrainConfig = TrainConfig(), model_config: ModelConfig = ModelConfig(),
          init: str | os.PathLike | None = None, primer_songs: Mapping[str, pd.DataFrame] | None = None,
          emotion: str | None = None, extra: Mapping[str, Any] | None = None, command: str | None = None) -> dict:
    """Fit a note LSTM on ``train_songs``, keep the best on ``val_songs``; write it to ``out_dir``.

    ``init``: a generator folder or ``generator.npz`` to start from (fine-tuning; its architecture
    is used), else random weights. Returns the metrics written to ``out_dir/metrics.json``.
    """
    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not train_songs:
        raise EmolibError("no training songs", out)
    if not 0.0 <= config.own_draws <= 1.0:
        raise EmolibError(f"own_draws is a share of the input notes: it must be in [0, 1], got {config.own_draws}")
    model, model_config = _build(config, model_config, init)
    if model_config.key_frame:  # every song in C major / A minor, and never transposed out of it
        train_songs, val_songs = _in_key_frame(train_songs), _in_key_frame(val_songs)
        primer_songs = train_songs if primer_songs is None else _in_key_frame(primer_songs)
        config = replace(config, transpose=(0, 0))
    val = sequences(val_songs, config.seq_length, top_first=model_config.top_first)
    if len(val) == 0:
        raise EmolibError("no validation notes: the validation songs are empty", out)
    primers, sources = primer_bank(primer_songs if primer_songs is not None else train_songs, seed=config.seed,
                                   top_first=model_config.top_first)

    def save(weights: Mapping[str, np.ndarray]) -> None:
        save_generator(out, weights, model_config, primers, sources, emotion)

    start_score = evaluate(model, val)
    best, history, clock = _fit(model, train_songs, val, config, save, emotion or "base", start_score["nll"],
                                keep_start=init is not None, top_first=model_config.top_first)
    fit_seconds = time.time() - clock["start"]
    save(best["weights"])
    shipped = load_generator(None, out)  # score what plays: the float16-rounded weights, reloaded, as int8 rows
    set_weights(model, shipped.played_weights)
    metrics = {
        "emotion": emotion, "model": str(out / BUNDLE_FILE), "command": command or command_line(),
        "init": None if init is None else str(init),
        "config": {**asdict(config), "transpose": list(config.transpose)},
        "model_config": {**asdict(model_config), "embed": list(model_config.embed)},
        "parameters": int(sum(v.size for v in shipped.weights.values())),
        "data": {"train_songs": len(train_songs), "val_songs": len(val_songs),
                 "train_notes": int(sum(len(t) for t in train_songs.values())),
                 "val_notes": int(sum(len(t) for t in val_songs.values())), **dict(extra or {})},
        "epochs_run": len(history["loss"]), "best_epoch": best["epoch"], "steps": clock["step"],
        "before": start_score, "val": evaluate(model, val), "history": history,
        "fit_seconds": round(fit_seconds, 1),
        "seconds_per_epoch": round(fit_seconds / max(len(history["loss"]), 1), 1),
        "seconds": round(time.time() - t0, 1),
    }
    write_json(out / METRICS_FILE, metrics)
    try:
        plot_history(history, out / CURVE_FILE, title=f"{emotion or 'base'}: loss per note")
    except Exception as err:  # a plot is a nicety; never fail a finished training on it
        print(f"emolib: could not plot the loss curves ({err})", file=sys.stderr)
    return metrics


def pretrain(pretrain_dir: str | os.PathLike | None, midi_dir: str | os.PathLike | None,
             out_dir: str | os.PathLike = BASE_DIR, *, config: TrainConfig = PRETRAIN,
             model_config: ModelConfig = ARCHITECTURE, emotions: Sequence[str] = MUSIC_EMOTIONS,
             max_files: int | None = None, val_share: float = 0.05, init: str | os.PathLike | None = None,
             command: str | None = None) -> dict:
    """Pretrain the base LSTM on POP909 (``pretrain_dir``) plus every emotion's training songs.

    Validation: 5% of the POP909 songs and the labelled validation songs. Defaults: the data
    root's ``music/pretrain/pop909`` and ``music/midi``. ``init``: a base to go on from (its
    architecture, with the held-key input or without it as ``model_config.held_input`` says, and in the
    key frame if it is or ``model_config.key_frame`` asks; the other fields are then unused), else random weights.
    """
    pre = Path(pretrain_dir) if pretrain_dir is not None else data_root() / "music" / "pretrain" / "pop909"
    midi = Path(midi_dir) if midi_dir is not None else default_midi_dir()
    pop = midi_files(pre)[:max_files]
    if not pop:
        raise EmolibError("no MIDI files to pretrain on", pre)
    pop_split = split_songs(pop, seed=config.seed, fractions={"val": val_share})
    splits = {e: labelled_split(midi, e, seed=config.seed, max_files=max_files) for e in emotions}
    train_files = pop_split["train"] + [f for s in splits.values() for f in s["train"]]
    val_files = pop_split["val"] + [f for s in splits.values() for f in s["val"]]
    train_songs, skipped = load_songs(train_files)
    val_songs, skipped_val = load_songs(val_files)
    extra = {"pretrain_dir": str(pre), "midi_dir": str(midi), "pop909_train": len(pop_split["train"]),
             "pop909_val": len(pop_split["val"]), "skipped": {**skipped, **skipped_val}}
    pop_train = set(pop_split["train"])  # primers come from the labelled clips only
    return train(train_songs, val_songs, out_dir, config=config, model_config=model_config, init=init,
                 primer_songs={k: v for k, v in train_songs.items() if k not in pop_train},
                 extra=extra, command=command)


def fine_tune(midi_dir: str | os.PathLike | None, out_dir: str | os.PathLike, emotion: str, *,
              base: str | os.PathLike | None = BASE_DIR, config: TrainConfig = FINE_TUNE,
              model_config: ModelConfig = ARCHITECTURE, max_files: int | None = None,
              command: str | None = None) -> dict:
    """Fine-tune a copy of the base LSTM (``base=None``: train from scratch) on one emotion's training
    songs, early-stopped on its validation songs; written to ``out_dir/<emotion>/``. From a base, only
    ``model_config.held_input`` is used, and ``key_frame``, which can only turn the frame on (the rest is
    the base's, its key frame included). The held-key input is on by default, so the fine-tuned LSTM
    learns which keys are still down even from a base that was not told (then guide it from a base
    that was: models/melody/README.md, "Keys still held, told to the model")."""
    midi = Path(midi_dir) if midi_dir is not None else default_midi_dir()
    split = labelled_split(midi, emotion, seed=config.seed, max_files=max_files)
    songs, skipped = load_songs(split["train"] + split["val"] + split["test"])  # every bad file is reported
    train_songs = {f: songs[f] for f in split["train"] if f in songs}
    val_songs = {f: songs[f] for f in split["val"] if f in songs}
    extra = {"midi_dir": str(midi), "test_files": len(split["test"]), "skipped": skipped}
    return train(train_songs, val_songs, Path(out_dir) / emotion, config=config, model_config=model_config,
                 init=base, emotion=emotion, extra=extra, command=command)


def fine_tune_all(midi_dir: str | os.PathLike | None, out_dir: str | os.PathLike,
                  emotions: Sequence[str] = MUSIC_EMOTIONS, **kwargs: Any) -> Iterator[dict]:
    """``fine_tune`` each emotion in turn; yield each one's metrics."""
    kwargs.setdefault("command", command_line())
    for emotion in emotions:
        yield fine_tune(midi_dir, out_dir, emotion, **kwargs)


def config_from(base: TrainConfig, **changes: Any) -> TrainConfig:
    """``base`` with the given fields changed (None values are ignored); unknown fields are an error."""
    names = {f.name for f in fields(TrainConfig)}
    unknown = set(changes) - names
    if unknown:
        raise EmolibError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    return replace(base, **{k: v for k, v in changes.items() if v is not None})


# =========================================================================== plots
def plot_history(history: Mapping[str, Sequence[float]], path: str | os.PathLike | None = None, title: str = "loss"):
    """Training loss and validation NLL per note by epoch (``plots.note_lstm_curves``); saved to ``path``."""
    from emolib.plots import note_lstm_curves

    fig = note_lstm_curves(history, title)
    if path is not None:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=72)
    return fig
