"""One LSTM melody generator per emotion: data, model, training, loading, fast generation.

The model is the TensorFlow "Generate music with an RNN" one: a window of ``seq_length`` notes
(pitch / 128, step, duration) -> LSTM -> three heads: ``pitch`` (128 logits), ``step`` and
``duration`` (seconds, MSE with positive pressure). Differences from the original, each for
a measured reason:

- step and duration are learned and generated in **seconds** and bounded to the ranges the
  training data spans (``MAX_STEP``, ``MIN_DURATION``..``MAX_DURATION``: the 99th percentiles
  of EMOPIA + VGMIDI are 0.5-1.6 s for step and 3-6 s for duration), so no "x10" fudge factor;
  pitches are sampled only within the piano range 21-108;
- generation carries the LSTM state and runs one step at a time in numpy on the exported
  weights (no ``model.predict`` per note: see ``benchmarks/bench_melody_generation.py``), and stops
  when the piece reaches the requested length in seconds;
- the primer is a random window from a training clip of the emotion, taken from a small primer
  bank shipped beside each model (no dataset needed at run time), and is not part of the output;
  velocities follow the primer's dynamics.

Shipped models: ``emolib/models/melody/<emotion>/`` with ``model.keras``, ``generator.npz``
(exported weights + primer bank), ``metrics.json`` (with the exact training command) and ``loss.png``.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np

from emolib import MUSIC_EMOTIONS
from emolib.errors import EmolibError
from emolib.files import atomic_path, write_json
from emolib.paths import MODELS_DIR, data_root
from emolib.runs import command_line as _command_line
from emolib.runs import get_strategy

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import pandas as pd
    import pretty_midi

#: Where the shipped generators live (one folder per emotion).
SHIPPED_DIR = MODELS_DIR / "melody"
#: Input features per note, in order (pitch is divided by 128, as in the tutorial).
KEY_ORDER = ("pitch", "step", "duration")
#: Bounds for step and duration in seconds (training targets are clipped to them too).
MAX_STEP = 1.5
MIN_DURATION, MAX_DURATION = 0.05, 4.0
#: Generated pitches stay on the piano keyboard.
PITCH_LOW, PITCH_HIGH = 21, 108
#: Loss weights of the tutorial (pitch cross-entropy is ~100x larger than the MSEs).
LOSS_WEIGHTS = {"pitch": 0.05, "step": 1.0, "duration": 1.0}
MODEL_FILE, BUNDLE_FILE, METRICS_FILE, CURVE_FILE = "model.keras", "generator.npz", "metrics.json", "loss.png"


# =========================================================================== data
def song_id(path: str | os.PathLike) -> str:
    """The song a clip belongs to, so clips of one song never straddle train and validation.

    EMOPIA clips ``emopia_Q<q>_<songid>_<n>.mid`` share ``<songid>``; other files (VGMIDI
    phrases ``..._<n>.mid``) group by their name without the trailing ``_<n>``.
    """
    stem = Path(path).stem
    m = re.fullmatch(r"emopia_Q\d_(.+)_\d+", stem)
    if m:
        return "emopia:" + m.group(1)
    return re.sub(r"_\d+$", "", stem)


def split_by_song(files: Sequence[str | os.PathLike], val_fraction: float = 0.15, seed: int = 0
                  ) -> tuple[list[str], list[str]]:
    """Split files into (train, validation) by song: every clip of a song lands on one side."""
    files = sorted(str(f) for f in files)
    songs = sorted({song_id(f) for f in files})
    rng = np.random.default_rng(seed)
    rng.shuffle(songs)
    n_val = int(round(len(songs) * val_fraction)) if len(songs) > 1 else 0
    n_val = min(max(n_val, 1 if len(songs) > 1 and val_fraction > 0 else 0), len(songs) - 1) if songs else 0
    val_songs = set(songs[:n_val])
    train = [f for f in files if song_id(f) not in val_songs]
    val = [f for f in files if song_id(f) in val_songs]
    return train, val


def note_features(table: "pd.DataFrame") -> np.ndarray:
    """(N, 3) float32 model features of a note table: pitch/128, step and duration (s), clipped."""
    feats = np.stack([
        table["pitch"].to_numpy(np.float32) / 128.0,
        np.clip(table["step"].to_numpy(np.float32), 0.0, MAX_STEP),
        np.clip(table["duration"].to_numpy(np.float32), MIN_DURATION, MAX_DURATION),
    ], axis=1)
    return feats.astype(np.float32)


def make_windows(tables: Iterable["pd.DataFrame"], seq_length: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Sliding windows over each table (never across files): inputs (M, seq_length, 3) and labels.

    Labels are the next note: ``pitch`` (int MIDI number), ``step`` and ``duration`` (seconds).
    """
    xs, ps, ss, ds = [], [], [], []
    for table in tables:
        if len(table) <= seq_length:
            continue
        f = note_features(table)
        win = np.lib.stride_tricks.sliding_window_view(f, (seq_length, 3))[:, 0][:-1]
        xs.append(win)
        nxt = f[seq_length:]
        ps.append(table["pitch"].to_numpy(np.int32)[seq_length:])
        ss.append(nxt[:, 1])
        ds.append(nxt[:, 2])
    if not xs:
        return np.zeros((0, seq_length, 3), np.float32), {k: np.zeros((0,), np.float32) for k in KEY_ORDER}
    return (np.ascontiguousarray(np.concatenate(xs)),
            {"pitch": np.concatenate(ps), "step": np.concatenate(ss), "duration": np.concatenate(ds)})


def primer_bank(tables: dict[str, "pd.DataFrame"], seq_length: int, count: int = 64, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Random note windows (count, seq_length, 4: pitch, step, duration, velocity) from the clips.

    Returns the windows and the file name each came from. Files are drawn round-robin in a
    seeded random order, so the bank covers as many clips as possible.
    """
    rng = np.random.default_rng(seed)
    names = [n for n in sorted(tables) if len(tables[n]) >= seq_length]
    if not names:
        raise EmolibError(f"no clip has the {seq_length} notes a primer needs")
    order = rng.permutation(len(names))
    windows, sources = [], []
    for k in range(count):
        name = names[order[k % len(names)]]
        t = tables[name]
        i = int(rng.integers(0, len(t) - seq_length + 1))
        w = t.iloc[i:i + seq_length]
        windows.append(np.stack([w["pitch"].to_numpy(np.float32), w["step"].to_numpy(np.float32),
                                 w["duration"].to_numpy(np.float32), w["velocity"].to_numpy(np.float32)], axis=1))
        sources.append(Path(name).name)
    return np.stack(windows).astype(np.float32), np.array(sources)


# =========================================================================== model
_REGISTERED: dict[str, Any] = {}


def _custom_objects() -> dict[str, Any]:
    """Register (once) and return the custom loss, so `.keras` files reload under Keras 3."""
    if not _REGISTERED:
        import keras

        @keras.saving.register_keras_serializable(package="emolib", name="mse_with_positive_pressure")
        def mse_with_positive_pressure(y_true, y_pred):
            """MSE plus a penalty on negative predictions (steps and durations are never negative)."""
            y_true = keras.ops.reshape(keras.ops.cast(y_true, y_pred.dtype), keras.ops.shape(y_pred))
            mse = (y_true - y_pred) ** 2
            positive_pressure = 10 * keras.ops.maximum(-y_pred, 0.0)
            return keras.ops.mean(mse + positive_pressure)

        _REGISTERED["mse_with_positive_pressure"] = mse_with_positive_pressure
    return dict(_REGISTERED)


def build_model(seq_length: int = 25, units: int = 128, layers: int = 1, learning_rate: float = 0.005) -> "keras.Model":
    """The tutorial's model, compiled: Input(seq_length, 3) -> LSTM x layers -> pitch/step/duration."""
    import keras

    loss = _custom_objects()["mse_with_positive_pressure"]
    inputs = keras.Input((seq_length, 3), name="notes")
    x = inputs
    for k in range(layers):
        x = keras.layers.LSTM(units, return_sequences=k < layers - 1, name=f"lstm_{k}")(x)
    outputs = {
        "pitch": keras.layers.Dense(128, name="pitch")(x),
        "step": keras.layers.Dense(1, name="step")(x),
        "duration": keras.layers.Dense(1, name="duration")(x),
    }
    model = keras.Model(inputs, outputs, name="emolib_melody")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss={"pitch": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "step": loss, "duration": loss},
        loss_weights=dict(LOSS_WEIGHTS),
        metrics={"pitch": [keras.metrics.SparseCategoricalAccuracy(name="acc")]},
    )
    return model


# =========================================================================== training


def train_emotion(midi_dir: str | os.PathLike, out_dir: str | os.PathLike, emotion: str, *, epochs: int = 30,
                  seq_length: int = 25, max_files: int | None = None, seed: int = 0, units: int = 128,
                  layers: int = 1, batch_size: int = 128, learning_rate: float = 0.005, patience: int = 4,
                  val_fraction: float = 0.15, max_windows: int | None = None, primers: int = 64,
                  strategy: "str | Any | None" = "default", command: str | None = None, verbose: int = 2) -> dict:
    """Train one emotion's generator on ``midi_dir/<emotion>/*.mid``; write it to ``out_dir/<emotion>/``.

    Writes ``model.keras`` (best validation loss, atomically), ``generator.npz`` (exported weights
    + primer bank), ``metrics.json`` and ``loss.png``; returns the metrics.
    """
    import keras
    from emolib import notes as notes_mod

    t0 = time.time()
    folder = Path(midi_dir) / emotion
    files = notes_mod.midi_files(folder)
    if max_files is not None:
        files = files[:max_files]
    if not files:
        raise EmolibError("no MIDI files (*.mid) to train on", folder)
    loaded = notes_mod.load_folder(folder, files=files)
    for path, why in loaded.skipped.items():
        print(f"emolib: skipped {why}", file=sys.stderr, flush=True)
    if not loaded.tables:
        raise EmolibError("none of the MIDI files could be used", folder)
    train_files, val_files = split_by_song(list(loaded.tables), val_fraction=val_fraction, seed=seed)
    x_tr, y_tr = make_windows([loaded.tables[f] for f in train_files], seq_length)
    x_va, y_va = make_windows([loaded.tables[f] for f in val_files], seq_length)
    if len(x_tr) == 0:
        raise EmolibError(f"no training windows: every clip has <= {seq_length} notes", folder)
    rng = np.random.default_rng(seed)
    if max_windows is not None and len(x_tr) > max_windows:
        keep = np.sort(rng.choice(len(x_tr), max_windows, replace=False))
        x_tr, y_tr = x_tr[keep], {k: v[keep] for k, v in y_tr.items()}
    has_val = len(x_va) > 0
    if not has_val:  # tiny corpora (smoke runs): validate on a slice of training windows
        x_va, y_va = x_tr[-max(1, len(x_tr) // 10):], {k: v[-max(1, len(x_tr) // 10):] for k, v in y_tr.items()}

    keras.utils.set_random_seed(seed)
    with get_strategy(strategy).scope():
        model = build_model(seq_length=seq_length, units=units, layers=layers, learning_rate=learning_rate)

    dest = Path(out_dir) / emotion
    dest.mkdir(parents=True, exist_ok=True)
    ckpt = dest / ".checkpoint.keras"
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
        keras.callbacks.ModelCheckpoint(str(ckpt), monitor="val_loss", save_best_only=True),
    ]
    t_fit = time.time()
    with contextlib.redirect_stdout(sys.stderr):  # Keras progress is for humans: stdout carries JSON lines
        hist = model.fit(x_tr, y_tr, validation_data=(x_va, y_va), epochs=epochs, batch_size=batch_size,
                         shuffle=True, callbacks=callbacks, verbose=verbose)
    fit_seconds = time.time() - t_fit
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    val_eval = model.evaluate(x_va, y_va, batch_size=512, verbose=0, return_dict=True)
    train_eval = model.evaluate(x_tr[:20000], {k: v[:20000] for k, v in y_tr.items()}, batch_size=512,
                                verbose=0, return_dict=True)

    with atomic_path(dest / MODEL_FILE) as tmp:
        model.save(tmp)
    ckpt.unlink(missing_ok=True)
    bank, sources = primer_bank({f: loaded.tables[f] for f in train_files}, seq_length, count=primers, seed=seed)
    save_bundle(dest, model, bank, sources)

    best_epoch = int(np.argmin(history["val_loss"])) + 1
    metrics = {
        "emotion": emotion,
        "model": str(dest / MODEL_FILE),
        "command": command or _command_line(),
        "parameters": {"midi_dir": str(midi_dir), "epochs": epochs, "seq_length": seq_length, "max_files": max_files,
                       "seed": seed, "units": units, "layers": layers, "batch_size": batch_size,
                       "learning_rate": learning_rate, "patience": patience, "val_fraction": val_fraction,
                       "max_windows": max_windows, "strategy": str(strategy)},
        "scale": {"step": "seconds", "duration": "seconds", "max_step": MAX_STEP,
                  "duration_range": [MIN_DURATION, MAX_DURATION], "pitch_range": [PITCH_LOW, PITCH_HIGH]},
        "data": {"files": len(files), "files_used": len(loaded.tables), "skipped": loaded.skipped,
                 "train_files": len(train_files), "val_files": len(val_files),
                 "train_songs": len({song_id(f) for f in train_files}), "val_songs": len({song_id(f) for f in val_files}),
                 "notes": loaded.n_notes, "train_windows": int(len(x_tr)), "val_windows": int(len(x_va)),
                 "validation": "held-out songs" if has_val else "last 10% of training windows (too few songs)"},
        "epochs_run": len(history["loss"]),
        "best_epoch": best_epoch,
        "val": {k: float(v) for k, v in val_eval.items()},
        "train": {k: float(v) for k, v in train_eval.items()},
        "pitch_top1_accuracy": float(val_eval.get("pitch_acc", float("nan"))),
        "history": history,
        "fit_seconds": round(fit_seconds, 1),
        "seconds": round(time.time() - t0, 1),
    }
    write_json(dest / METRICS_FILE, metrics)
    try:
        plot_history(history, dest / CURVE_FILE, title=f"{emotion}: loss")
    except Exception as err:  # a plot is a nicety; never fail a finished training on it
        print(f"emolib: could not plot the loss curves ({err})", file=sys.stderr)
    return metrics


def train_all(midi_dir: str | os.PathLike | None, out_dir: str | os.PathLike, emotions: Sequence[str] = MUSIC_EMOTIONS,
              **kwargs: Any) -> Iterator[dict]:
    """Train one generator per emotion (``midi_dir`` None = ``data_root()/music/midi``); yield each metrics dict."""
    midi_dir = Path(midi_dir) if midi_dir is not None else data_root() / "music" / "midi"
    if not midi_dir.is_dir():
        raise EmolibError("MIDI folder not found (expected <emotion>/*.mid inside)", midi_dir)
    kwargs.setdefault("command", _command_line())
    for emotion in emotions:
        yield train_emotion(midi_dir, out_dir, emotion, **kwargs)


def plot_history(history: dict[str, list[float]], path: str | os.PathLike | None = None, title: str = "loss"):
    """Training and validation loss per epoch (total and per head); saved to ``path`` when given."""
    from matplotlib.figure import Figure  # no pyplot: never touches the notebook's backend

    fig = Figure(figsize=(14, 3))
    axes = fig.subplots(1, 4)
    for ax, key in zip(axes, ("loss", "pitch_loss", "step_loss", "duration_loss")):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + key in history:
                ax.plot(range(1, len(history[prefix + key]) + 1), history[prefix + key], style,
                        label="validation" if prefix else "train")
        ax.set_title(key)
        ax.set_xlabel("epoch")
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=72)
    return fig


# =========================================================================== export
def export_weights(model: "keras.Model") -> dict[str, np.ndarray]:
    """The LSTM and head weights as numpy arrays (keys ``lstm{k}_{kernel,recurrent,bias}``, ``{head}_{w,b}``)."""
    out: dict[str, np.ndarray] = {}
    k = 0
    while True:
        try:
            layer = model.get_layer(f"lstm_{k}")
        except ValueError:
            break
        w, u, b = layer.get_weights()
        out[f"lstm{k}_kernel"], out[f"lstm{k}_recurrent"], out[f"lstm{k}_bias"] = w, u, b
        k += 1
    if k == 0:
        raise EmolibError("not an emolib melody model (no lstm_0 layer)")
    for head in KEY_ORDER:
        w, b = model.get_layer(head).get_weights()
        out[f"{head}_w"], out[f"{head}_b"] = w, b
    return {name: np.asarray(v, np.float32) for name, v in out.items()}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_bundle(folder: str | os.PathLike, model: "keras.Model", primers: np.ndarray, sources: np.ndarray) -> Path:
    """Write ``generator.npz``: exported weights, primer bank, and the hash of the model it came from."""
    folder = Path(folder)
    arrays = export_weights(model)
    arrays["primers"] = primers.astype(np.float32)
    arrays["primer_sources"] = np.asarray(sources).astype(str)
    arrays["seq_length"] = np.array(model.input_shape[1], np.int32)
    arrays["model_sha256"] = np.array(_sha256(folder / MODEL_FILE))
    with atomic_path(folder / BUNDLE_FILE) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return folder / BUNDLE_FILE


# =========================================================================== generation
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # overflow-free logistic


@dataclass
class StepOutput:
    """What the network predicts for the next note: pitch logits and step/duration in seconds."""

    pitch_logits: np.ndarray
    step: float
    duration: float


class Generator:
    """A trained emotion generator: the Keras model plus a fast numpy step for sampling.

    ``generate`` carries the LSTM state from note to note (one numpy step per note, ~0.05 ms)
    instead of re-running ``model.predict`` on a sliding window.
    """

    def __init__(self, weights: dict[str, np.ndarray], primers: np.ndarray, emotion: str | None = None,
                 model_path: str | os.PathLike | None = None, primer_sources: np.ndarray | None = None,
                 model: "keras.Model | None" = None):
        self.emotion = emotion
        self.model_path = None if model_path is None else Path(model_path)
        self.primers = np.asarray(primers, np.float32)
        self.primer_sources = primer_sources
        self._model = model
        n = 0
        self._lstm: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        while f"lstm{n}_kernel" in weights:
            self._lstm.append((weights[f"lstm{n}_kernel"].astype(np.float64), weights[f"lstm{n}_recurrent"].astype(np.float64),
                               weights[f"lstm{n}_bias"].astype(np.float64)))
            n += 1
        if not self._lstm:
            raise EmolibError("generator weights hold no LSTM layer", model_path)
        self.units = [u.shape[0] for _, u, _ in self._lstm]
        self._heads = {h: (weights[f"{h}_w"].astype(np.float64), weights[f"{h}_b"].astype(np.float64)) for h in KEY_ORDER}
        self._pitch_mask = np.full(128, -np.inf)
        self._pitch_mask[PITCH_LOW:PITCH_HIGH + 1] = 0.0

    # ------------------------------------------------------------------ model access
    @property
    def model(self) -> "keras.Model":
        """The Keras model (input (seq_length, 3), dict outputs pitch/step/duration), loaded on first use."""
        if self._model is None:
            if self.model_path is None:
                raise EmolibError("this generator has no Keras model file")
            self._model = load_keras_model(self.model_path)
        return self._model

    @property
    def seq_length(self) -> int:
        """Notes per primer window (the model's input length)."""
        return int(self.primers.shape[1])

    # ------------------------------------------------------------------ the network, one note at a time
    def initial_state(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Zero (h, c) for every LSTM layer."""
        return [(np.zeros(u), np.zeros(u)) for u in self.units]

    def step(self, features: np.ndarray, state: list[tuple[np.ndarray, np.ndarray]]
             ) -> tuple[StepOutput, list[tuple[np.ndarray, np.ndarray]]]:
        """Feed one note (pitch/128, step, duration) and return the next-note prediction and new state."""
        x = np.asarray(features, np.float64)
        new_state = []
        for (kernel, recurrent, bias), (h, c) in zip(self._lstm, state):
            z = x @ kernel + h @ recurrent + bias
            n = h.shape[0]
            i, f, g, o = _sigmoid(z[:n]), _sigmoid(z[n:2 * n]), np.tanh(z[2 * n:3 * n]), _sigmoid(z[3 * n:])
            c = f * c + i * g
            h = o * np.tanh(c)
            new_state.append((h, c))
            x = h
        out = StepOutput(pitch_logits=x @ self._heads["pitch"][0] + self._heads["pitch"][1],
                         step=float(x @ self._heads["step"][0][:, 0] + self._heads["step"][1][0]),
                         duration=float(x @ self._heads["duration"][0][:, 0] + self._heads["duration"][1][0]))
        return out, new_state

    def predict_window(self, window: np.ndarray) -> StepOutput:
        """The prediction for the note after a (seq_length, 3) window, from zero state (= ``model.predict``)."""
        state = self.initial_state()
        out = None
        for row in np.asarray(window):
            out, state = self.step(row, state)
        return out

    def sample(self, out: StepOutput, rng: np.random.Generator, temperature: float = 1.0) -> tuple[int, float, float]:
        """Turn one prediction into a note: (pitch, step s, duration s), bounded to playable ranges.

        Pitch is drawn from softmax(logits / temperature) over the piano range; step and
        duration are the regressed values clipped to [0, MAX_STEP] and [MIN_DURATION, MAX_DURATION].
        This is the single place where sampling-time steering can act.
        """
        logits = out.pitch_logits / max(float(temperature), 1e-3) + self._pitch_mask
        p = np.exp(logits - logits.max())
        cdf = np.cumsum(p)
        pitch = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
        pitch = min(max(pitch, PITCH_LOW), PITCH_HIGH)
        step = min(max(out.step, 0.0), MAX_STEP)
        duration = min(max(out.duration, MIN_DURATION), MAX_DURATION)
        return pitch, step, duration

    # ------------------------------------------------------------------ pieces
    def generate_notes(self, seconds: float = 40.0, temperature: float = 1.0, seed: int | None = None,
                       primer: np.ndarray | None = None) -> "pd.DataFrame":
        """New notes (a note table) filling ``seconds``; the primer is not included.

        Notes are drawn until an onset reaches ``seconds``; notes still sounding then are cut
        there (never below ``MIN_DURATION``: later onsets are dropped), and the last onset's
        notes ring to the end, so the piece lasts ``seconds``.
        """
        import pandas as pd

        if not seconds or seconds <= 0:
            raise EmolibError(f"seconds must be positive, got {seconds}")
        if temperature is None or temperature < 0:
            raise EmolibError(f"temperature must be >= 0 (0 picks the most likely pitch), got {temperature}")
        rng = np.random.default_rng(seed)
        if primer is None:
            primer = self.primers[int(rng.integers(len(self.primers)))]
        primer = np.asarray(primer, np.float32)
        vel_pool = primer[:, 3] if primer.shape[1] > 3 else np.full(len(primer), 80.0)
        state = self.initial_state()
        out = None
        for p, s, d in primer[:, :3]:
            out, state = self.step((p / 128.0, min(max(s, 0.0), MAX_STEP), min(max(d, MIN_DURATION), MAX_DURATION)), state)
        pitches, starts, durations, velocities = [], [], [], []
        t = 0.0
        velocity = float(np.mean(vel_pool))
        max_notes = int(seconds / 0.005) + 1000  # a model predicting step 0 forever still terminates
        while len(pitches) < max_notes:
            pitch, step, duration = self.sample(out, rng, temperature)
            if pitches:
                t += step
            if t >= seconds:
                break
            velocity = 0.6 * velocity + 0.4 * float(vel_pool[int(rng.integers(len(vel_pool)))])
            pitches.append(pitch)
            starts.append(t)
            durations.append(duration)
            velocities.append(int(round(min(max(velocity, 1.0), 127.0))))
            out, state = self.step((pitch / 128.0, step, duration), state)
        start = np.asarray(starts)
        keep = start <= seconds - MIN_DURATION  # a note must fit before the end at its minimum length
        keep[0] = True  # even a piece shorter than MIN_DURATION has its first note
        start = start[keep]
        end = np.minimum(start + np.asarray(durations)[keep], seconds)
        end[start >= start[-1] - 1e-9] = seconds  # the final onset rings out to the requested length
        return pd.DataFrame({"pitch": np.asarray(pitches)[keep], "step": np.diff(start, prepend=0.0),
                             "duration": end - start, "start": start, "end": end,
                             "velocity": np.asarray(velocities)[keep]})

    def generate(self, seconds: float = 40.0, temperature: float = 1.0, seed: int | None = None,
                 program: int = 0, primer: np.ndarray | None = None) -> "pretty_midi.PrettyMIDI":
        """A new piece of ``seconds`` in this generator's emotion (same seed -> same piece)."""
        from emolib.notes import notes_to_midi

        table = self.generate_notes(seconds=seconds, temperature=temperature, seed=seed, primer=primer)
        return notes_to_midi(table, program=program, instrument_name=f"emolib {self.emotion or 'melody'}")


# =========================================================================== loading
def load_keras_model(path: str | os.PathLike) -> "keras.Model":
    """Load a melody ``.keras`` (safe mode, custom loss registered); EmolibError naming a bad file."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise EmolibError("melody model not found", path)
    try:
        return keras.saving.load_model(str(path), custom_objects=_custom_objects(), safe_mode=True)
    except Exception as err:
        raise EmolibError(f"cannot load melody model ({type(err).__name__}: {err})", path) from None


def _resolve(emotion: str | None, path: str | os.PathLike | None) -> tuple[Path, Path]:
    """(model.keras, generator.npz) for a shipped emotion, a model folder, or a .keras path."""
    if path is None:
        if emotion not in MUSIC_EMOTIONS:
            raise EmolibError(f"unknown emotion {emotion!r}; choose one of {', '.join(MUSIC_EMOTIONS)}")
        folder = SHIPPED_DIR / emotion
        return folder / MODEL_FILE, folder / BUNDLE_FILE
    path = Path(path)
    if path.is_dir():
        if emotion and (path / emotion / MODEL_FILE).is_file() and not (path / MODEL_FILE).is_file():
            path = path / emotion
        return path / MODEL_FILE, path / BUNDLE_FILE
    return path, path.with_name(BUNDLE_FILE)


_CACHE: dict[tuple[str | None, str], Generator] = {}


def load_generator(emotion: str | None = None, path: str | os.PathLike | None = None) -> Generator:
    """The generator for ``emotion``: shipped (``path=None``), or from a model folder / ``.keras`` file.

    A folder holds ``model.keras`` and ``generator.npz`` (weights + primer bank), as ``train``
    writes them (a training ``OUT_DIR`` with ``<emotion>/`` subfolders works too). Cached per
    process; the Keras model itself loads lazily (``.model``), so loading takes milliseconds.
    When ``generator.npz`` was exported from a different ``model.keras``, the weights are
    re-exported from the model file (the primer bank is kept).
    """
    model_file, bundle_file = _resolve(emotion, path)
    key = (emotion, str(model_file.resolve()))
    if key in _CACHE:
        return _CACHE[key]
    if not model_file.is_file():
        raise EmolibError("melody model not found" + ("" if path else " (the shipped models are missing from the package)"),
                          model_file)
    if not bundle_file.is_file():
        raise EmolibError("primer bank missing: a melody model needs generator.npz beside it (written by training)",
                          bundle_file)
    try:
        with np.load(bundle_file, allow_pickle=False) as z:
            bundle = {k: z[k] for k in z.files}
    except Exception as err:
        raise EmolibError(f"cannot read the generator bundle ({type(err).__name__}: {err})", bundle_file) from None
    model = None
    if str(bundle.get("model_sha256", "")) != _sha256(model_file):
        model = load_keras_model(model_file)
        bundle.update(export_weights(model))
    gen = Generator(bundle, bundle["primers"], emotion=emotion, model_path=model_file,
                    primer_sources=bundle.get("primer_sources"), model=model)
    _CACHE[key] = gen
    return gen


def describe_data(midi_dir: str | os.PathLike | None, emotion: str, max_files: int | None = None) -> "pd.DataFrame":
    """All notes of one emotion's folder in one table (with a ``file`` column), for statistics and plots."""
    import pandas as pd
    from emolib import notes as notes_mod

    midi_dir = Path(midi_dir) if midi_dir is not None else data_root() / "music" / "midi"
    loaded = notes_mod.load_folder(midi_dir / emotion, max_files=max_files)
    if not loaded.tables:
        raise EmolibError("no usable MIDI files", midi_dir / emotion)
    return pd.concat([t.assign(file=Path(f).name) for f, t in loaded.tables.items()], ignore_index=True)
