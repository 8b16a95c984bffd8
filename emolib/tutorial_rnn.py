"""The TensorFlow "Generate music with an RNN" tutorial's model, kept as a teaching baseline.

A window of ``seq_length`` notes (pitch / 128, step, duration) -> LSTM(128) -> a 128-way pitch
softmax and two regression heads for step and duration (mean squared error with a penalty on
negative values). Notebook 03 trains it briefly beside the note-token LSTMs (``emolib.melody``)
to show what its regression heads cannot do: they predict the *average* next step, so two notes
never start together (no chords) and rhythms blur toward the mean. ``benchmarks/bench_music.py``
scores it on the same held-out songs.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from emolib.melody import log_softmax, sigmoid
from emolib.notes import PIANO_HIGH, PIANO_LOW

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import pandas as pd

__all__ = ["MAX_STEP", "windows", "build", "train", "evaluate", "generate_notes"]

#: Steps and durations are clipped to these ranges (seconds), as the tutorial's data is.
MAX_STEP, MIN_DURATION, MAX_DURATION = 1.5, 0.05, 4.0
_REGISTERED: dict[str, Any] = {}


def _features(table: pd.DataFrame) -> np.ndarray:
    return np.stack([table["pitch"].to_numpy(np.float32) / 128.0,
                     np.clip(table["step"].to_numpy(np.float32), 0.0, MAX_STEP),
                     np.clip(table["duration"].to_numpy(np.float32), MIN_DURATION, MAX_DURATION)], axis=1)


def windows(tables: Sequence[pd.DataFrame], seq_length: int = 25) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Sliding windows (M, seq_length, 3) over each table and the next note as labels (pitch int, step, duration)."""
    xs: list[np.ndarray] = []
    labels: dict[str, list] = {"pitch": [], "step": [], "duration": []}
    for table in tables:
        if len(table) <= seq_length:
            continue
        f = _features(table)
        xs.append(np.lib.stride_tricks.sliding_window_view(f, (seq_length, 3))[:-1, 0])
        labels["pitch"].append(table["pitch"].to_numpy(np.int32)[seq_length:])
        labels["step"].append(f[seq_length:, 1])
        labels["duration"].append(f[seq_length:, 2])
    if not xs:
        return np.zeros((0, seq_length, 3), np.float32), {k: np.zeros(0, np.float32) for k in labels}
    return np.concatenate(xs), {k: np.concatenate(v) for k, v in labels.items()}


def _loss() -> Any:
    if not _REGISTERED:
        import keras

        @keras.saving.register_keras_serializable(package="emolib", name="mse_with_positive_pressure")
        def mse_with_positive_pressure(y_true, y_pred):
            """MSE plus a penalty on negative predictions (the tutorial's loss for step and duration)."""
            y_true = keras.ops.reshape(keras.ops.cast(y_true, y_pred.dtype), keras.ops.shape(y_pred))
            return keras.ops.mean((y_true - y_pred) ** 2 + 10 * keras.ops.maximum(-y_pred, 0.0))

        _REGISTERED["loss"] = mse_with_positive_pressure
    return _REGISTERED["loss"]


def build(seq_length: int = 25, units: int = 128, learning_rate: float = 0.005) -> keras.Model:
    """The tutorial's model, compiled with its loss weights (pitch 0.05, step 1, duration 1)."""
    import keras

    inputs = keras.Input((seq_length, 3))
    x = keras.layers.LSTM(units, name="lstm")(inputs)
    outputs = {"pitch": keras.layers.Dense(128, name="pitch")(x), "step": keras.layers.Dense(1, name="step")(x),
               "duration": keras.layers.Dense(1, name="duration")(x)}
    model = keras.Model(inputs, outputs, name="tutorial_rnn")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss={"pitch": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                        "step": _loss(), "duration": _loss()},
                  loss_weights={"pitch": 0.05, "step": 1.0, "duration": 1.0})
    return model


def train(train_tables: Sequence[pd.DataFrame], val_tables: Sequence[pd.DataFrame], epochs: int = 10,
          seq_length: int = 25, batch_size: int = 256, seed: int = 0, max_windows: int | None = None,
          patience: int = 3) -> tuple[keras.Model, dict[str, list[float]]]:
    """Train the tutorial model (best validation loss kept); returns it and its loss history."""
    import keras

    keras.utils.set_random_seed(seed)
    x, y = windows(train_tables, seq_length)
    xv, yv = windows(val_tables, seq_length)
    if max_windows is not None and len(x) > max_windows:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_windows, replace=False))
        x, y = x[keep], {k: v[keep] for k, v in y.items()}
    model = build(seq_length)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    hist = model.fit(x, y, validation_data=(xv, yv), epochs=epochs, batch_size=batch_size, verbose=0,
                     callbacks=[stop])
    return model, {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def evaluate(model: keras.Model, tables: Sequence[pd.DataFrame]) -> dict[str, float]:
    """Held-out pitch NLL (nats), pitch top-1 / top-5 and the step / duration mean squared errors."""
    seq_length = int(model.input_shape[1])
    x, y = windows(tables, seq_length)
    out = model.predict(x, batch_size=1024, verbose=0)
    z = np.asarray(out["pitch"], np.float64)
    logp = log_softmax(z)
    best5 = np.argsort(-z, axis=1)[:, :5]
    return {"nll_pitch": float(-logp[np.arange(len(z)), y["pitch"]].mean()),
            "pitch_top1": float((best5[:, 0] == y["pitch"]).mean()),
            "pitch_top5": float((best5 == y["pitch"][:, None]).any(1).mean()),
            "step_mse": float(np.mean((np.asarray(out["step"])[:, 0] - y["step"]) ** 2)),
            "duration_mse": float(np.mean((np.asarray(out["duration"])[:, 0] - y["duration"]) ** 2)),
            "notes": int(len(z))}


def generate_notes(model: keras.Model, primer: pd.DataFrame, seconds: float = 20.0, temperature: float = 1.0,
                   seed: int | None = None) -> pd.DataFrame:
    """A piece from the tutorial model, sampled as the tutorial does (pitch drawn, step and duration
    as predicted), with one numpy LSTM step per note on the model's weights."""
    import pandas as pd

    w, u, b = (np.asarray(a, np.float64) for a in model.get_layer("lstm").get_weights())
    heads = {k: [np.asarray(a, np.float64) for a in model.get_layer(k).get_weights()]
             for k in ("pitch", "step", "duration")}
    n = u.shape[0]
    h, c = np.zeros(n), np.zeros(n)
    rng = np.random.default_rng(seed)

    def feed(x: np.ndarray) -> None:
        nonlocal h, c
        z = x @ w + h @ u + b
        c = sigmoid(z[n:2 * n]) * c + sigmoid(z[:n]) * np.tanh(z[2 * n:3 * n])
        h = sigmoid(z[3 * n:]) * np.tanh(c)

    for row in _features(primer):
        feed(row)
    rows: list[Any] = []
    t = 0.0
    mask = np.full(128, -np.inf)
    mask[PIANO_LOW:PIANO_HIGH + 1] = 0.0
    while t < seconds and len(rows) < seconds * 60:
        logits = (h @ heads["pitch"][0] + heads["pitch"][1]) / max(temperature, 1e-3) + mask
        p = np.exp(logits - logits.max())
        pitch = int(rng.choice(128, p=p / p.sum()))
        step = float(np.clip(h @ heads["step"][0][:, 0] + heads["step"][1][0], 0.0, MAX_STEP))
        duration = float(np.clip(h @ heads["duration"][0][:, 0] + heads["duration"][1][0], MIN_DURATION, MAX_DURATION))
        t += step if rows else 0.0
        rows.append((pitch, step, duration, t, min(t + duration, seconds), 80))
        feed(np.array([pitch / 128.0, step, duration]))
    table = pd.DataFrame(rows, columns=["pitch", "step", "duration", "start", "end", "velocity"])
    return table[table["start"] < seconds].reset_index(drop=True)

