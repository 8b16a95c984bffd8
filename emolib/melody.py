"""One note LSTM per emotion: the model, and fast generation from it without TensorFlow.

The TensorFlow "Generate music with an RNN" tutorial's model, each note a token of four parts
(``notes.TOKEN_FIELDS``), each embedded and predicted with a softmax, factorised part by part
(``emolib/models/melody/README.md`` says why). A base LSTM fine-tuned per emotion
(``emolib.melody_train``) ships as one ``generator.npz`` (architecture, float16 weights, primers).
Generation: one numpy step per note, each part drawn with its own temperature and top-p (steering hook),
within the rules every piece keeps (``emolib.guards``).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from emolib import MUSIC_EMOTIONS, blas, guards, int8
from emolib.errors import EmolibError
from emolib.files import atomic_path
from emolib.notes import DURATION_VALUES, PIANO_HIGH, PIANO_LOW, STEP_VALUES, TOKEN_FIELDS, VOCAB
from emolib.paths import MODELS_DIR
from emolib.sampling import Sampling, Steer

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import pandas as pd
    import pretty_midi

__all__ = ["SHIPPED_DIR", "BASE_DIR", "BUNDLE_FILE", "METRICS_FILE", "CURVE_FILE", "ModelConfig", "Sampling", "Steer",
           "MelodyGenerator", "build_model", "export_weights", "set_weights", "save_generator", "load_generator",
           "load_bundle_file", "log_softmax", "sigmoid", "product_matrices"]

#: Where the shipped generators live: ``<emotion>/`` per emotion and ``base/`` (the pretrained LSTM).
SHIPPED_DIR = MODELS_DIR / "melody"
BASE_DIR = SHIPPED_DIR / "base"
BUNDLE_FILE, METRICS_FILE, CURVE_FILE = "generator.npz", "metrics.json", "loss.png"
#: Shortest note a piece is cut to at its end (seconds).
MIN_DURATION = float(DURATION_VALUES[0])
#: The held-key input is fed times HELD_SCALE: its layers start new in a fine-tune from a base without
#: them, and Adam moves a weight by about the learning rate whatever its input's scale, so they learn
#: HELD_SCALE times faster than the rest.
HELD_SCALE = 10.0
#: A held key starts HELD_PRIOR nats less likely (real clips strike a held key in under 1% of notes).
HELD_PRIOR = 3.0
#: Bumped when the bundle layout changes.
FORMAT = 2


@dataclass(frozen=True)
class ModelConfig:
    """The architecture of a melody LSTM (stored in every bundle, so it can be rebuilt)."""

    units: int = field(default=384, metadata={"help": "LSTM width (default 384)"})
    layers: int = field(default=2, metadata={"help": "stacked LSTMs (default 2)"})
    embed: tuple[int, int, int, int] = (32, 96, 32, 16)  # step, pitch, duration, velocity (its flag: cli.py)
    head_units: int = field(default=256, metadata={"help": "hidden width of each part's output head (default 256)"})
    dropout: float = field(default=0.1, metadata={"help": "after each LSTM, in training only (default 0.1)"})
    factorised: bool = field(default=True, metadata={"help": "heads see earlier parts (--no-factorised: independent)"})
    top_first: bool = field(default=True, metadata={"help": "chords top note first (--no-top-first: as played)"})
    key_frame: bool = field(default=False, metadata={  # tried, not adopted (models/melody/README.md, "One key frame")
        "help": "train in one key frame (every song moved to C major / A minor: notes.in_key_frame; no transposition)"
                " and move each piece to a random key"})
    held_input: bool = field(default=False, metadata={  # False: bundles from before it have no such input
        "help": "the pitch head is told which keys are surely still down at the note's onset (guards.Keys)"})


# =========================================================================== the Keras model
_REGISTERED: dict[str, Any] = {}


def _custom_objects() -> dict[str, Any]:
    """Register (once) and return the masked loss, so saved Keras models reload."""
    if not _REGISTERED:
        import keras

        @keras.saving.register_keras_serializable(package="emolib", name="masked_token_loss")
        def masked_token_loss(y_true, y_pred):
            """Mean cross-entropy over real positions; label -1 marks padding."""
            y_true = keras.ops.cast(y_true, "int32")
            mask = keras.ops.cast(y_true >= 0, "float32")
            ce = keras.losses.sparse_categorical_crossentropy(keras.ops.maximum(y_true, 0),
                                                              keras.ops.cast(y_pred, "float32"), from_logits=True)
            return keras.ops.sum(ce * mask) / keras.ops.maximum(keras.ops.sum(mask), 1.0)

        _REGISTERED["masked_token_loss"] = masked_token_loss
    return dict(_REGISTERED)


def build_model(config: ModelConfig = ModelConfig(), learning_rate: float = 1e-3) -> keras.Model:
    """The note LSTM, compiled.

    Inputs: ``notes`` (batch, time, 4) tokens, and ``next`` (batch, time, 3): the step, pitch and
    duration tokens of the note being predicted (given during training, so each part's head sees
    the parts drawn before it). Outputs: logits for each part of the next note.
    """
    import keras
    from keras import layers

    notes_in = keras.Input((None, 4), dtype="int32", name="notes")
    next_in = keras.Input((None, 3), dtype="int32", name="next")
    parts = [layers.Embedding(VOCAB[f], d, name=f"in_{f}")(notes_in[..., i])
             for i, (f, d) in enumerate(zip(TOKEN_FIELDS, config.embed))]
    x = layers.Concatenate(name="note")(parts)
    for k in range(config.layers):
        x = layers.LSTM(config.units, return_sequences=True, name=f"lstm_{k}")(x)
        if config.dropout:
            x = layers.Dropout(config.dropout, name=f"dropout_{k}")(x)
    outputs = {}
    held_in = keras.Input((None, VOCAB["pitch"]), dtype="float32", name="held") if config.held_input else None
    held = None if held_in is None else layers.Rescaling(HELD_SCALE, name="held_scaled")(held_in)
    for j, f in enumerate(TOKEN_FIELDS):
        terms = [layers.Dense(config.head_units, name=f"{f}_from_h")(x)]
        if f == "pitch" and held is not None:
            terms.append(layers.Dense(config.head_units, use_bias=False, kernel_initializer="zeros",
                                      name="pitch_from_held")(held))
        terms += [layers.Embedding(VOCAB[g], config.head_units, name=f"{f}_from_{g}")(next_in[..., i])
                  for i, g in enumerate(TOKEN_FIELDS[:j] if config.factorised else ())]
        summed = terms[0] if len(terms) == 1 else layers.Add(name=f"{f}_sum")(terms)
        hidden = layers.Activation("relu", name=f"{f}_hidden")(summed)
        outputs[f] = layers.Dense(VOCAB[f], name=f, dtype="float32")(hidden)
        if f == "pitch" and held is not None:  # a held key starts HELD_PRIOR nats less likely
            prior = keras.initializers.Constant(-HELD_PRIOR / HELD_SCALE * np.eye(VOCAB["pitch"], dtype="float32"))
            outputs[f] = layers.Add(name="pitch_logits", dtype="float32")(
                [outputs[f], layers.Dense(VOCAB[f], use_bias=False, kernel_initializer=prior, dtype="float32",
                                          name="pitch_held")(held)])
    inputs = {"notes": notes_in, "next": next_in, **({"held": held_in} if held_in is not None else {})}
    model = keras.Model(inputs, outputs, name="emolib_note_lstm")
    loss = _custom_objects()["masked_token_loss"]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=1.0),
                  loss={f: loss for f in TOKEN_FIELDS})
    return model


def export_weights(model: keras.Model) -> dict[str, np.ndarray]:
    """Every weight of a note LSTM as numpy arrays, keyed ``<layer>/<index>`` (float32)."""
    out: dict[str, np.ndarray] = {}
    for layer in model.layers:
        for k, w in enumerate(layer.get_weights()):
            out[f"{layer.name}/{k}"] = np.asarray(w, np.float32)
    if "lstm_0/0" not in out:
        raise EmolibError("not an emolib note LSTM (no lstm_0 layer)")
    return out


#: The layers of the held-key input (ModelConfig.held_input).
HELD_LAYERS = ("pitch_from_held", "pitch_held")


def set_weights(model: keras.Model, weights: Mapping[str, np.ndarray]) -> keras.Model:
    """Load ``export_weights``-style arrays into a model built with the same config."""
    for layer in model.layers:
        n = len(layer.get_weights())
        if n and layer.name in HELD_LAYERS and f"{layer.name}/0" not in weights:
            continue  # a base without the held-key input: these start from their initialisers
        if n:
            try:
                layer.set_weights([np.asarray(weights[f"{layer.name}/{k}"], np.float32) for k in range(n)])
            except (KeyError, ValueError) as err:
                raise EmolibError(f"weights do not fit the model at layer {layer.name} ({err})") from None
    return model


# =========================================================================== bundles
def save_generator(folder: str | os.PathLike, weights: Mapping[str, np.ndarray], config: ModelConfig,
                   primers: np.ndarray, primer_sources: Sequence[str], emotion: str | None = None) -> Path:
    """Write ``folder/generator.npz`` atomically: config, weights (float16), primer bank."""
    arrays: dict[str, np.ndarray] = {f"w/{k}": np.asarray(v, np.float16) for k, v in weights.items()}
    arrays["config"] = np.array(json.dumps(asdict(config)))
    arrays["format"] = np.array(FORMAT)
    arrays["emotion"] = np.array(emotion or "")
    arrays["primers"] = np.asarray(primers, np.int16)
    arrays["primer_sources"] = np.asarray(list(primer_sources), dtype=str)
    dest = Path(folder) / BUNDLE_FILE
    with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **cast(dict[str, Any], arrays))
    return dest


def _read_bundle(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            bundle = {k: z[k] for k in z.files}
    except Exception as err:
        raise EmolibError(f"cannot read the melody model ({type(err).__name__}: {err})", path) from None
    if int(bundle.get("format", 0)) != FORMAT or "config" not in bundle:
        raise EmolibError("not a note-LSTM bundle of this emolib version (retrain it with emolib melody train)", path)
    return bundle


def product_matrices(w: Mapping[str, np.ndarray], layers: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The per-note products' matrices (outputs x inputs), kept as int8 rows: layer 0's recurrent one,
    each deeper layer's [input; recurrent], and the four heads' first layers over the LSTM output."""
    lstm = [w["lstm_0/1"].T] + [np.concatenate([w[f"lstm_{k}/0"], w[f"lstm_{k}/1"]]).T for k in range(1, layers)]
    return lstm, np.concatenate([w[f"{f}_from_h/0"] for f in TOKEN_FIELDS], axis=1).T


# =========================================================================== numerics
def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, overflow-free (the LSTM gates of the numpy steps)."""
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis (held-out NLL of every model here)."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


# =========================================================================== the numpy generator
class MelodyGenerator:
    """A trained note LSTM: numpy weights, primer bank, fast sampling; the Keras model on demand.

    ``generate`` carries the LSTM state from note to note, one numpy step per note. The first
    layer's input projection is precomputed per token value (an embedding row times the LSTM
    kernel), so a step costs four table look-ups and the recurrent products, which run on int8 rows
    (``emolib.int8``). ``weights`` are the model as trained (what training and saving start from);
    ``played_weights``, and the Keras model built from them, hold what the int8 rows stand for.
    """

    def __init__(self, weights: Mapping[str, np.ndarray], config: ModelConfig, primers: np.ndarray,
                 emotion: str | None = None, path: str | os.PathLike | None = None,
                 primer_sources: Sequence[str] | None = None):
        self.config, self.emotion, self.path = config, emotion, None if path is None else Path(path)
        self.primers = np.asarray(primers, np.int64)
        self.primer_sources = list(primer_sources) if primer_sources is not None else []
        self.weights = w = {k: np.asarray(v, np.float32) for k, v in weights.items()}  # as trained
        try:
            kernel0 = w["lstm_0/0"]
            offsets = np.cumsum([0, *config.embed])
            # token value -> its contribution to layer 0's gates, per part
            self._in = [w[f"in_{f}/0"] @ kernel0[offsets[i]:offsets[i + 1]] for i, f in enumerate(TOKEN_FIELDS)]
            lstm, from_h = product_matrices(w, config.layers)  # as int8 rows (played_weights: what they stand for)
            self._lstm = [(int8.Int8Rows.of(m), w[f"lstm_{k}/2"]) for k, m in enumerate(lstm)]
            self._from_h = int8.Int8Rows.of(from_h)
            given = (lambda j: TOKEN_FIELDS[:j]) if config.factorised else (lambda j: ())
            self._from_h_bias = np.concatenate([w[f"{f}_from_h/1"] for f in TOKEN_FIELDS])
            h_units = config.head_units
            self._heads = {f: (slice(j * h_units, (j + 1) * h_units), [w[f"{f}_from_{g}/0"] for g in given(j)],
                               w[f"{f}/0"], w[f"{f}/1"]) for j, f in enumerate(TOKEN_FIELDS)}
        except KeyError as err:
            raise EmolibError(f"melody weights are missing {err}", path) from None
        # the held-key input (config.held_input): per key, its term in the pitch head's hidden layer and logits
        self._held = None
        if config.held_input:
            try:
                self._held = (HELD_SCALE * w["pitch_from_held/0"], HELD_SCALE * w["pitch_held/0"])
            except KeyError as err:
                raise EmolibError(f"melody weights are missing {err} (the held-key input)", path) from None
        self._piano_only = np.full(VOCAB["pitch"], -np.inf, np.float32)  # pitches off the piano are never drawn
        self._piano_only[PIANO_LOW:PIANO_HIGH + 1] = 0.0
        self._model: keras.Model | None = None
        self._primed: dict[int, tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]] = {}  # see primed()

    # ------------------------------------------------------------------ the network
    @property
    def played_weights(self) -> dict[str, np.ndarray]:
        """The weights as played: ``weights`` with the large matrices replaced by what their int8 rows
        stand for (``model`` is built from these; made on demand, as they are needed only with Keras)."""
        w = dict(self.weights)  # product_matrices, undone
        rows = [r.dequantised()[0].T for r, _ in self._lstm]
        w["lstm_0/1"] = rows[0]
        for k in range(1, self.config.layers):
            w[f"lstm_{k}/0"], w[f"lstm_{k}/1"] = np.split(rows[k], [len(w[f"lstm_{k}/0"])])
        heads = np.split(self._from_h.dequantised()[0].T, len(TOKEN_FIELDS), axis=1)
        return w | {f"{f}_from_h/0": m for f, m in zip(TOKEN_FIELDS, heads)}

    @property
    def model(self) -> keras.Model:
        """The Keras model of the weights as played (``played_weights``: the int8 rows' values), so that
        it computes what the numpy step does (built on first use; imports TensorFlow)."""
        if self._model is None:
            self._model = set_weights(build_model(self.config), self.played_weights)
        return self._model

    def initial_state(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Zero (h, c) for every LSTM layer."""
        return [(np.zeros(self.config.units, np.float32), np.zeros(self.config.units, np.float32))
                for _ in range(self.config.layers)]

    def step(self, token: Sequence[int] | np.ndarray, state: list[tuple[np.ndarray, np.ndarray]]
             ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """Feed one note token; return the top LSTM output and the new state (the leading axes: one
        LSTM here, a stack of them in ``guidance.Guided``)."""
        new_state = []
        x = np.empty(0, np.float32)  # replaced by each layer's output (config.layers >= 1)
        for k, ((weights, bias), (h, c)) in enumerate(zip(self._lstm, state)):
            given = h if k == 0 else np.concatenate([x, h], axis=-1)
            if k == 0:  # the token's term in layer 0's gates, looked up per part
                bias = bias + self._in[0][..., token[0], :] + self._in[1][..., token[1], :] \
                    + self._in[2][..., token[2], :] + self._in[3][..., token[3], :]
            h, c = int8.lstm_cell(weights, bias, given, c)
            new_state.append((h, c))
            x = h
        return x, new_state

    def primed(self, primer: np.ndarray, index: int | None = None
               ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """The LSTM output and state after ``primer``; ``index``: it is that primer of the bank, whose
        state is kept (a piece then skips its primer's steps; ``step`` never changes a state in place)."""
        if index is not None and index in self._primed:
            return self._primed[index]
        state, h = self.initial_state(), np.empty(0, np.float32)
        for token in primer:
            h, state = self.step(token, state)
        if index is not None:
            self._primed[index] = (h, state)
        return h, state

    def head_inputs(self, h: np.ndarray) -> np.ndarray:
        """The LSTM output's contribution to every part's head (computed once per note)."""
        return int8.matvec(self._from_h, self._from_h_bias, h)

    def part_logits(self, part: str, hidden: np.ndarray, chosen: Mapping[str, int],
                    down: np.ndarray | None = None) -> np.ndarray:
        """Logits of one part of the next note, from ``head_inputs(h)`` and the parts chosen before it;
        ``down``: the keys surely still down at its onset (``held_down``; models with ``held_input``)."""
        rows, conds, w_out, b_out = self._heads[part]
        x = hidden[..., rows]  # the leading axes: one LSTM here, a stack of them in guidance.Guided
        for g, table in zip(TOKEN_FIELDS, conds):
            x = x + table[..., chosen[g], :]
        if part != "pitch" or self._held is None or down is None or not len(down):
            return self._head_out(np.maximum(x, 0.0), w_out) + b_out
        to_hidden, to_logits = self._held
        return (self._head_out(np.maximum(x + to_hidden[..., down, :].sum(-2), 0.0), w_out) + b_out
                + to_logits[..., down, :].sum(-2))

    @staticmethod
    def _head_out(x: np.ndarray, w_out: np.ndarray) -> np.ndarray:
        """A head's output layer (without its bias)."""
        return x @ w_out

    def held_down(self, held: np.ndarray | None, step: int) -> np.ndarray | None:
        """The keys the pitch head is told are down at an onset ``step`` after the last (``held``:
        ``guards.Keys.held()``); None for a model without the held-key input."""
        return None if self._held is None or held is None else np.flatnonzero(guards.down_at(held, step))

    def sample_note(self, h: np.ndarray, rng: np.random.Generator, sampling: Sampling,
                    steer: Steer | None = None, time: float = 0.0,
                    guard: Mapping[str, np.ndarray] | None = None, held: np.ndarray | None = None) -> np.ndarray:
        """Draw the next note's token part by part (step, pitch, duration, velocity); ``guard`` adds
        per-part logit masks (``-inf`` for values not allowed); ``held`` (``guards.Keys.held``) goes to
        a model with the held-key input and, with ``guards.HELD_KEYS``, keeps the pitch off keys surely
        still down at the drawn onset, unless that leaves none."""
        chosen: dict[str, int] = {}
        hidden = self.head_inputs(h)
        for part in TOKEN_FIELDS:
            down = self.held_down(held, chosen["step"]) if part == "pitch" else None
            logits = self.part_logits(part, hidden, chosen, down)
            if part == "pitch":
                logits = logits + self._piano_only
                if held is not None and guards.HELD_KEYS:
                    free = logits + guards.held_pitches(held, chosen["step"])
                    logits = free if np.isfinite(free + (guard or {}).get("pitch", 0.0)).any() else logits
            if guard is not None and part in guard:
                logits = logits + guard[part]
            if steer is not None:
                logits = steer.logits(part, logits, chosen, time)
            chosen[part] = sampling.draw(part, logits, rng)
        return np.array([chosen[f] for f in TOKEN_FIELDS], np.int64)

    def teacher_forced_logits(self, tokens: np.ndarray) -> dict[str, np.ndarray]:
        """Per part, the logits for notes 1..N-1 given notes 0..N-2 (the Keras model's outputs, in numpy)."""
        tokens = np.asarray(tokens, np.int64)
        state, keys = self.initial_state(), guards.Keys() if self._held is not None else None
        out: dict[str, list[np.ndarray]] = {f: [] for f in TOKEN_FIELDS}
        for t in range(len(tokens) - 1):
            h, state = self.step(tokens[t], state)
            chosen = dict(zip(TOKEN_FIELDS, tokens[t + 1]))
            hidden = self.head_inputs(h)
            down = None
            if keys is not None:  # the keys down matter only to a model told of them
                keys.strike(tokens[t], first=t == 0)
                down = self.held_down(keys.held(), chosen["step"])
            for f in TOKEN_FIELDS:
                out[f].append(self.part_logits(f, hidden, chosen, down if f == "pitch" else None))
        return {f: np.array(v) for f, v in out.items()}

    # ------------------------------------------------------------------ pieces
    def generate_tokens(self, seconds: float = 40.0, temperature: float | Mapping[str, float] = 1.0,
                        top_p: float | Mapping[str, float] | None = None, seed: int | None = None,
                        primer: np.ndarray | None = None, steer: Steer | None = None) -> tuple[np.ndarray, np.ndarray]:
        """New note tokens whose onsets fill ``seconds``, and their onset times; the primer is not included."""
        if not seconds or seconds <= 0:
            raise EmolibError(f"seconds must be positive, got {seconds}")
        sampling = temperature if isinstance(temperature, Sampling) else Sampling.of(temperature, top_p)
        rng = np.random.default_rng(seed)
        index = None if primer is not None else int(rng.integers(len(self.primers)))
        primer = np.asarray(self.primers[index] if index is not None else primer, np.int64).reshape(-1, 4)
        if steer is not None:
            steer.begin(primer, rng)
        tokens: list[np.ndarray] = []
        onsets: list[float] = []
        queue: list[np.ndarray] = []  # notes the hook asked for (a phrase played again)
        tracked = guards.HELD_KEYS or self._held is not None  # which keys are down: for the rule, the model, or both
        t, keys = 0.0, guards.Keys() if tracked else None
        max_notes = int(seconds * 60) + 200  # 60 notes/s is beyond any pianist: a runaway model still stops
        with blas.Threads() as threads:  # both cores when they pay (emolib.blas): the same piece either way
            h, state = self.primed(primer, index)
            while len(tokens) < max_notes:
                guard, held = guards.masks(tokens, t, seconds), None if keys is None else keys.held()
                rule = held if guards.HELD_KEYS else None
                if not (queue and guards.allowed(queue[0], guard, rule)):  # a note the guards forbid ends a replay
                    token = self.sample_note(h, rng, sampling, steer, t, guard, held)
                    queue = list(getattr(steer, "next_notes", lambda _, drawn: [drawn])(tokens, token))
                    queue = queue if queue and guards.allowed(queue[0], guard, rule) else [token]
                token = queue.pop(0)
                if tokens:
                    t += float(STEP_VALUES[token[0]])
                if t >= seconds:
                    break
                if keys is not None:
                    keys.strike(token, first=not tokens)
                tokens.append(token)
                onsets.append(t)
                h, state = threads.run(self.step, token, state)
        return np.array(tokens, np.int64).reshape(-1, 4), np.array(onsets)

    def generate_notes(self, seconds: float = 40.0, temperature: float | Mapping[str, float] = 1.0,
                       top_p: float | Mapping[str, float] | None = None, seed: int | None = None,
                       primer: np.ndarray | None = None, steer: Steer | None = None, in_frame: bool = False
                       ) -> pd.DataFrame:
        """A new note table filling ``seconds`` (same seed -> same notes). Times and velocities are
        drawn within their token's bin (``notes.detokenize``). Notes still sounding at the end are cut
        there, never below the shortest duration (later onsets are dropped), and the last onset's notes
        ring to the end, so the piece lasts ``seconds``. A ``key_frame`` model's piece is then moved to a
        random key (``notes.to_random_key``) unless ``in_frame`` (a blend moves all its sections at once)."""
        from emolib.notes import detokenize, to_random_key

        tokens, _ = self.generate_tokens(seconds, temperature, top_p, seed, primer, steer)
        table = detokenize(tokens, rng=np.random.default_rng(None if seed is None else [seed, 1]))
        start = table["start"].to_numpy() - table["step"].iloc[0]  # the first note starts at 0
        keep = start <= seconds - MIN_DURATION
        keep[0] = True
        table, start = table[keep].reset_index(drop=True), start[keep]
        end = np.minimum(start + table["duration"].to_numpy(), seconds)
        end[start >= start[-1] - 1e-9] = seconds
        table = table.assign(step=np.diff(start, prepend=0.0), duration=end - start, start=start, end=end)
        return to_random_key(table, seed) if self.config.key_frame and not in_frame else table

    def generate(self, seconds: float = 40.0, temperature: float | Mapping[str, float] = 1.0,
                 top_p: float | Mapping[str, float] | None = None, seed: int | None = None, program: int = 0,
                 primer: np.ndarray | None = None, steer: Steer | None = None) -> pretty_midi.PrettyMIDI:
        """A new piece of ``seconds`` in this generator's emotion, as MIDI (same seed -> same piece)."""
        from emolib.notes import notes_to_midi

        table = self.generate_notes(seconds, temperature, top_p, seed, primer, steer)
        return notes_to_midi(table, program=program, instrument_name=f"emolib {self.emotion or 'melody'}")


# =========================================================================== loading
def _resolve(emotion: str | None, path: str | os.PathLike | None) -> Path:
    """The generator.npz of a shipped emotion (or ``base``), a model folder, a training output
    folder holding ``<emotion>/``, or the file itself."""
    if path is None:
        if emotion not in (*MUSIC_EMOTIONS, "base"):
            raise EmolibError(f"unknown emotion {emotion!r}; choose one of {', '.join(MUSIC_EMOTIONS)}")
        return SHIPPED_DIR / emotion / BUNDLE_FILE
    path = Path(path)
    if path.is_dir():
        if emotion and (path / emotion / BUNDLE_FILE).is_file() and not (path / BUNDLE_FILE).is_file():
            path = path / emotion
        return path / BUNDLE_FILE
    return path


_CACHE: dict[tuple[str | None, str, int], MelodyGenerator] = {}


def load_generator(emotion: str | None = None, path: str | os.PathLike | None = None) -> MelodyGenerator:
    """The note generator (numpy LSTM sampler) of a shipped ``emotion`` (happy, sad, angry, relax, or
    ``"base"``: the pretrained LSTM), or of the model folder or ``generator.npz`` at ``path``.
    Cached per process; no TensorFlow. ``emolib.steer.generate`` turns its notes into MIDI."""
    bundle_file = _resolve(emotion, path)
    if not bundle_file.is_file():
        missing = "" if path else " (the shipped models are missing from the package)"
        raise EmolibError("melody model not found" + missing, bundle_file)
    key = (emotion, str(bundle_file.resolve()), bundle_file.stat().st_mtime_ns)
    if key in _CACHE:
        return _CACHE[key]
    bundle = _read_bundle(bundle_file)
    try:
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in json.loads(str(bundle["config"])).items()}
        config = ModelConfig(**{"top_first": False, **fields})  # bundles from before the option: as played
    except (TypeError, ValueError) as err:
        raise EmolibError(f"the model's config cannot be read ({err})", bundle_file) from None
    weights = {k[2:]: v for k, v in bundle.items() if k.startswith("w/")}
    gen = MelodyGenerator(weights, config, bundle["primers"], emotion=str(bundle["emotion"]) or emotion,
                          path=bundle_file, primer_sources=[str(s) for s in bundle.get("primer_sources", [])])
    _CACHE[key] = gen
    return gen


def load_bundle_file(path: str | os.PathLike) -> MelodyGenerator:
    """Load one ``generator.npz`` (the retrain gate's check that a candidate loads)."""
    return load_generator(None, path)
