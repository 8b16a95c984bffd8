"""Light sampling-time steering of the emotion LSTMs, and music for mixed emotions.

Each emotion's LSTM carries its emotion itself (it was fine-tuned on that emotion's music), so a
plain piece (``strength=0, repeat=0``) is the model's own music. Steering first amplifies that:
``emolib.guidance`` samples the emotion's LSTM with the pretrained base beside it, moving every part's
log-probabilities ``guidance.GUIDANCE * strength`` times further along what fine-tuning changed
(emotion - base). Beyond that it only nudges the logits the model samples from
(``emolib.sampling.Steer``), and each nudge is an exponential tilt of one part's distribution from
where the generator's own emotion sits toward a target measured on real clips (``fit_targets``:
medians of ``emolib.music_features`` features, shipped as JSON):

- tempo: step logits tilted by ``g * log(step)``, shifting the typical time between onsets by
  the ratio of the target's onset density to the own emotion's (chords, step 0, untouched);
- dynamics: velocity logits tilted linearly toward the target loudness;
- register: pitch logits tilted linearly toward the target pitch centre;
- mode: a small bias toward the scale of the target's mode, in the key that best fits the primer
  (``MODE_WEIGHT``: with guidance on, only sad still needs it).

Steering also shapes the piece's form: real pieces repeat their phrases and a note LSTM drawing note
by note almost never does, so at each phrase end the phrase just played may come back (``Phrases``;
``repeat=0`` turns it off). The notes that come back are the model's own, replayed through it.

For one emotion the target *is* its own character, so only guidance, the mode nudge and phrases act (and ``contrast``
above 1 pushes targets further from the all-emotion mean: a caricature, off by default because it
buys judge scores with realism). A face is rarely one emotion: ``generate_blend`` takes the whole
probability vector; each likely emotion's LSTM (guided) writes its share of the piece, tilted toward the
probability-weighted mix of the targets, so tempo, loudness, register and mode sit in between.
"""
from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emolib import MUSIC_EMOTIONS, guidance, melody
from emolib.errors import EmolibError
from emolib.files import write_json
from emolib.notes import STEP_VALUES, VELOCITY_VALUES
from emolib.paths import MODELS_DIR

if TYPE_CHECKING:  # pragma: no cover
    import pretty_midi

__all__ = ["DEFAULT_STRENGTH", "DEFAULT_REPEAT", "MODE_WEIGHT", "Steering", "Phrases", "Hook", "fit_targets",
           "load_targets", "steering_for", "blend_steering", "normalise", "hook", "generate", "generate_blend",
           "to_music_probabilities", "blend_plan"]

#: Default strength of steering (0: no nudge). See models/melody/README.md, "Choosing the steering".
DEFAULT_STRENGTH = 1.0
#: Mode nudge at strength 1, in logits (a z-scored key profile times this, times the emotion's weight).
MODE_BIAS = 0.4
#: Each emotion's share of MODE_BIAS, chosen on the validation songs with guidance (guidance.GUIDANCE) on: the
#: nudge makes pieces dwell on the tonic triad (about 5 effective pitch classes where real clips use
#: 6.5), and guidance carries happy, angry and relax without it; sad still needs it to be heard as sad.
MODE_WEIGHT = {"happy": 0.0, "sad": 1.0, "angry": 0.0, "relax": 0.0}
#: Phrases that come back (chosen on the validation songs: models/melody/README.md, "Phrases that come
#: back"): a phrase is PHRASE_ONSETS onsets; at its end, with probability ``repeat`` (DEFAULT_REPEAT), it
#: is played again, its last FRESH_ONSETS onsets left to the model so the repeat can end differently.
PHRASE_ONSETS = 16
FRESH_ONSETS = 2
DEFAULT_REPEAT = 0.2
#: Shipped per-emotion targets (written by fit_targets).
DEFAULT_TARGETS = MODELS_DIR / "steer" / "targets.json"
#: Target keys mixed geometrically (a blend of 2 and 8 onsets/s sounds like 4).
_LOG_KEYS = ("onset_density", "duration")
_KEYS = ("onset_density", "pitch_mean", "pitch_std", "velocity_mean", "velocity_std", "chord_size", "duration")


@dataclass(frozen=True)
class Steering:
    """Where a piece is steered: target character (medians of real clips, mixed for blends) and
    how hard (``strength`` 0 = off, 1 = default)."""

    targets: Mapping[str, float]
    mode: float             # -1 minor .. +1 major (0: no mode nudge)
    strength: float = DEFAULT_STRENGTH
    repeat: float = DEFAULT_REPEAT  # chance that a phrase comes back at its end (0: never)


# --------------------------------------------------------------------------- targets
def fit_targets(midi_dir: str | os.PathLike | None = None, out: str | os.PathLike | None = DEFAULT_TARGETS,
                emotions: Sequence[str] = MUSIC_EMOTIONS, cache_dir: str | os.PathLike | None = None,
                command: str | None = None) -> dict[str, dict[str, float]]:
    """Per-emotion steering targets: medians of the real clips' musical features (written as JSON)."""
    from emolib import music_features
    from emolib.runs import command_line

    clips = music_features.list_clips(midi_dir, emotions)
    X, ok, _ = music_features.feature_matrix([c.path for c in clips], cache_dir=cache_dir)
    labels = np.array([clips[i].emotion for i in ok])
    col = {n: i for i, n in enumerate(music_features.FEATURE_NAMES)}
    targets: dict[str, Any] = {}
    for e in emotions:
        F = X[labels == e]
        median = {k: float(np.median(F[:, col[k]])) for k in (*_KEYS[:-1], "duration_log_mean")}
        targets[e] = {**{k: median[k] for k in _KEYS[:-1]}, "mode": float(np.mean(F[:, col["mode_major"]] > 0) * 2 - 1),
                      "duration": float(np.exp(median["duration_log_mean"])), "clips": int(len(F))}
    if out is not None:
        write_json(out, {"targets": targets, "source": str(midi_dir or "DATA/music/midi"),
                         "command": command or command_line(),
                         "note": "medians of emolib.music_features.features over the labelled clips; mode = "
                                 "2 * share of clips leaning major - 1"})
    return targets


def load_targets(path: str | os.PathLike | None = None) -> dict[str, dict[str, float]]:
    """The per-emotion targets (shipped ones by default)."""
    path = Path(path) if path is not None else DEFAULT_TARGETS
    if not path.is_file():
        raise EmolibError("steering targets not found (make them with emolib.steer.fit_targets)", path)
    return _read_targets(path.resolve(), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_targets(path: Path, mtime_ns: int) -> dict[str, dict[str, float]]:
    """One read per file version (every piece and every blend section asks for the targets)."""
    return json.loads(path.read_text())["targets"]


def steering_for(emotion: str, strength: float = DEFAULT_STRENGTH,
                 targets: Mapping[str, Mapping[str, float]] | None = None, contrast: float = 1.0,
                 repeat: float = DEFAULT_REPEAT) -> Steering:
    """The steering of one emotion's pieces."""
    return blend_steering({emotion: 1.0}, strength, targets, contrast, repeat)


def normalise(probabilities: Mapping[str, float]) -> dict[str, float]:
    """Probabilities restricted to the music emotions, summing to 1; EmolibError when none is positive."""
    probs = {e: float(probabilities.get(e, 0.0)) for e in MUSIC_EMOTIONS}
    unknown = set(probabilities) - set(MUSIC_EMOTIONS)
    if unknown:
        raise EmolibError(f"unknown music emotion(s) {sorted(unknown)}; map face emotions first "
                          f"(pipeline.FACE_TO_MUSIC); known: {', '.join(MUSIC_EMOTIONS)}")
    if any(v < 0 or not np.isfinite(v) for v in probs.values()) or sum(probs.values()) <= 0:
        raise EmolibError(f"probabilities must be non-negative with a positive sum, got {dict(probabilities)}")
    total = sum(probs.values())
    return {e: v / total for e, v in probs.items()}


def blend_steering(probabilities: Mapping[str, float], strength: float = DEFAULT_STRENGTH,
                   targets: Mapping[str, Mapping[str, float]] | None = None, contrast: float = 1.0,
                   repeat: float = DEFAULT_REPEAT) -> Steering:
    """Steering toward the probability-weighted mix of the emotions' targets.

    ``contrast`` > 1 first pushes each emotion's targets that many times as far from the
    all-emotion mean as the real clips' medians are; mode becomes the emotions' majority modes
    (+1 major, -1 minor) times their MODE_WEIGHT, mixed by probability.
    """
    if not 0.0 <= repeat <= 1.0:
        raise EmolibError(f"repeat is a probability: it must be in [0, 1], got {repeat}")
    if not strength >= 0.0:
        raise EmolibError(f"steering strength must be >= 0 (0: no nudge), got {strength}")
    targets = load_targets() if targets is None else targets
    probs = normalise(probabilities)
    mix: dict[str, float] = {}
    for k in _KEYS:
        values = {e: (np.log(t[k]) if k in _LOG_KEYS else t[k]) for e, t in targets.items()}
        centre = float(np.mean(list(values.values())))
        v = sum(p * (centre + contrast * (values[e] - centre)) for e, p in probs.items() if p > 0)
        mix[k] = float(np.exp(v)) if k in _LOG_KEYS else float(v)
    mode = float(sum(p * np.sign(targets[e]["mode"]) * MODE_WEIGHT.get(e, 1.0) for e, p in probs.items() if p > 0))
    return Steering(targets=mix, mode=mode, strength=float(strength), repeat=float(repeat))


# --------------------------------------------------------------------------- the sampling hook
def _key_bias(tonic: int, major: bool) -> np.ndarray:
    """A z-scored Krumhansl profile of the key, laid over all 128 pitches."""
    from emolib.music_features import KK_MAJOR, KK_MINOR

    prof = np.roll(KK_MAJOR if major else KK_MINOR, tonic)
    prof = (prof - prof.mean()) / prof.std()
    return prof[np.arange(128) % 12]


def _primer_key(primer: np.ndarray, major: bool) -> int:
    """Tonic of the key of the wanted mode that best fits the primer's pitch classes."""
    from emolib.music_features import key_correlations

    pc = np.bincount(np.asarray(primer)[:, 1].astype(int) % 12, minlength=12).astype(float)
    maj, mnr = key_correlations(pc)
    return int((maj if major else mnr).argmax())


class Phrases:
    """One piece's phrases: counts onsets (drawn or played again) and, at each phrase end, decides
    whether the phrase just played comes back (in real clips 10-31% of the top line's 4-interval
    shapes recur; in pieces drawn note by note, 0-2%)."""

    def __init__(self, repeat: float, rng: np.random.Generator) -> None:
        self.repeat, self.rng = repeat, rng
        self.starts: list[int] = []  # where the current phrase's onsets start (its first: the phrase's)
        self.seen = 0  # notes looked at so far

    def next_notes(self, tokens: Sequence[np.ndarray], drawn: np.ndarray) -> list[np.ndarray]:
        """``[drawn]``; or, when ``drawn`` would start a new phrase that the dice send back, the phrase
        just ended up to its last FRESH_ONSETS onsets, its first note at ``drawn``'s step (the gap the
        model chose after the phrase) and ``drawn`` itself dropped."""
        self.starts += [k for k in range(self.seen, len(tokens)) if k == 0 or tokens[k][0] != 0]
        self.seen = len(tokens)
        if drawn[0] == 0 or len(self.starts) < PHRASE_ONSETS:
            return [drawn]
        starts, self.starts = self.starts, []
        if self.rng.random() >= self.repeat:
            return [drawn]
        again = [np.array(tok) for tok in tokens[starts[0]:starts[max(len(starts) - FRESH_ONSETS, 1)]]]
        again[0][0] = drawn[0]
        return again


class Hook:
    """The ``sampling.Steer`` hook: tilts from ``own`` (the generator's emotion's targets) toward
    ``steering``'s targets. Tilts are exact exponential families: multiplying p(x) by exp(g * x)
    moves the mean of x by about g * var(x)."""

    def __init__(self, steering: Steering, own: Mapping[str, float]):
        s, t = steering.strength, steering.targets
        self.steering = steering
        log_steps = np.log(np.maximum(STEP_VALUES, 1e-3))
        # tempo: mean log step should move by -log(density ratio); var(log step) ~ 1 in real clips
        self.step_bias = np.where(STEP_VALUES > 0,
                                  -s * np.log(t["onset_density"] / own["onset_density"]) * log_steps, 0.0)
        pitches = np.arange(128, dtype=float)
        self.pitch_tilt = s * (t["pitch_mean"] - own["pitch_mean"]) / max(own["pitch_std"], 4.0) ** 2 * pitches
        self.velocity_bias = (s * (t["velocity_mean"] - own["velocity_mean"]) / max(own["velocity_std"], 4.0) ** 2
                              * VELOCITY_VALUES)
        self.pitch_bias = self.pitch_tilt
        self.phrases: Phrases | None = None

    def begin(self, primer: np.ndarray, rng: np.random.Generator) -> None:
        s = self.steering
        self.phrases = Phrases(s.repeat, rng.spawn(1)[0]) if s.repeat > 0 else None
        self.pitch_bias = self.pitch_tilt
        if s.strength and s.mode:
            major = s.mode > 0
            self.pitch_bias = self.pitch_tilt + s.strength * MODE_BIAS * abs(s.mode) * _key_bias(
                _primer_key(primer, major), major)

    def logits(self, part: str, logits: np.ndarray, chosen: Mapping[str, int], time: float) -> np.ndarray:
        if part == "step":
            return logits + self.step_bias
        if part == "pitch":
            return logits + self.pitch_bias
        if part == "velocity":
            return logits + self.velocity_bias
        return logits

    def next_notes(self, tokens: Sequence[np.ndarray], drawn: np.ndarray) -> Sequence[np.ndarray]:
        return [drawn] if self.phrases is None else self.phrases.next_notes(tokens, drawn)


def _generator_in(models: str | os.PathLike | None, emotion: str, strength: float) -> melody.MelodyGenerator:
    """``guidance.generator`` for the entry points: ``models`` is a folder of ``<emotion>/`` (None:
    shipped), guidance scales with the steering strength."""
    return guidance.generator(emotion, None if models is None else Path(models) / emotion,
                              guidance.GUIDANCE * strength)


def hook(generator_emotion: str, steering: Steering,
         targets: Mapping[str, Mapping[str, float]] | None = None) -> Hook | None:
    """The hook that steers ``generator_emotion``'s LSTM (None when steering and repeats are off)."""
    if steering.strength <= 0 and steering.repeat <= 0:
        return None
    targets = load_targets() if targets is None else targets
    if generator_emotion not in targets:
        raise EmolibError(f"no steering targets for {generator_emotion!r}; known: {', '.join(targets)}")
    return Hook(steering, targets[generator_emotion])


# --------------------------------------------------------------------------- public entry points
def generate(emotion: str, seconds: float = 40.0, temperature: float = 1.0, seed: int | None = None,
             strength: float = DEFAULT_STRENGTH, models: str | os.PathLike | None = None, program: int = 0,
             top_p: float | Mapping[str, float] | None = None, contrast: float = 1.0, repeat: float = DEFAULT_REPEAT
             ) -> pretty_midi.PrettyMIDI:
    """One piece in ``emotion`` from its LSTM, guided from the base and nudged by ``strength``
    (``strength`` 0 and ``repeat`` 0: the model's own music).

    ``models`` is a folder with ``<emotion>/`` generator folders (default: the shipped ones).
    """
    h = hook(emotion, steering_for(emotion, strength, contrast=contrast, repeat=repeat))
    gen = _generator_in(models, emotion, strength)
    return gen.generate(seconds=seconds, temperature=temperature, top_p=top_p, seed=seed, program=program, steer=h)


def to_music_probabilities(face_probabilities: Mapping[str, float], mapping: Mapping[str, str]) -> dict[str, float]:
    """Face-emotion probabilities summed onto music emotions through ``mapping`` (e.g.
    ``pipeline.FACE_TO_MUSIC``: neutral -> relax), normalised; unmapped classes are an EmolibError."""
    music = {e: 0.0 for e in MUSIC_EMOTIONS}
    for face, p in face_probabilities.items():
        target = face if face in MUSIC_EMOTIONS and face not in mapping else mapping.get(face)
        if target not in music:
            raise EmolibError(f"face emotion {face!r} has no music emotion in the mapping")
        music[target] += float(p)
    return normalise(music)


def blend_plan(probabilities: Mapping[str, float], seconds: float, min_share: float = 0.15) -> list[tuple[str, float]]:
    """Which LSTM writes how many seconds of a blended piece: every emotion with at least
    ``min_share`` of the probability (the top one always), lengths in proportion, most likely first."""
    probs = normalise(probabilities)
    ranked = sorted(probs.items(), key=lambda kv: -kv[1])
    kept = [(e, p) for e, p in ranked if p >= min_share] or ranked[:1]
    total = sum(p for _, p in kept)
    return [(e, seconds * p / total) for e, p in kept]


def generate_blend(probabilities: Mapping[str, float], seconds: float = 40.0, temperature: float = 1.0,
                   seed: int | None = None, strength: float = DEFAULT_STRENGTH, min_share: float = 0.15,
                   models: str | os.PathLike | None = None, program: int = 0,
                   top_p: float | Mapping[str, float] | None = None, contrast: float = 1.0,
                   repeat: float = DEFAULT_REPEAT) -> pretty_midi.PrettyMIDI:
    """Music from a whole probability vector (e.g. a face that is 60% sad, 30% relax, 10% angry).

    Each emotion with at least ``min_share`` of the probability writes a section with its own LSTM,
    its length in proportion (most likely emotion first); each section is tilted toward the
    probability-weighted mix of all emotions' targets. A one-hot vector gives exactly
    ``generate(emotion)``.
    """
    import pandas as pd

    from emolib.notes import notes_to_midi, to_random_key

    probs = normalise(probabilities)
    plan = blend_plan(probs, seconds, min_share)
    if len(plan) == 1 and probs[plan[0][0]] == 1.0:
        return generate(plan[0][0], seconds, temperature, seed, strength, models, program, top_p, contrast, repeat)
    steering = blend_steering(probs, strength, contrast=contrast, repeat=repeat)
    parts, offset, framed = [], 0.0, False
    for k, (emotion, length) in enumerate(plan):
        gen = _generator_in(models, emotion, strength)
        part_seed = None if seed is None else seed * 1009 + k
        table = gen.generate_notes(seconds=length, temperature=temperature, top_p=top_p, seed=part_seed,
                                   steer=hook(emotion, steering), in_frame=True)
        parts.append(table.assign(start=table["start"] + offset, end=table["end"] + offset))
        offset, framed = offset + length, framed or gen.config.key_frame
    table = pd.concat(parts, ignore_index=True)
    table["step"] = np.diff(table["start"].to_numpy(), prepend=0.0)
    if framed:  # sections from key-frame models share their frame: the whole piece moves to one key
        table = to_random_key(table, seed)
    name = "emolib blend " + " ".join(f"{e}:{probs[e]:.2f}" for e, _ in plan)
    return notes_to_midi(table, program=program, instrument_name=name)
