"""Steering the per-emotion LSTMs toward their emotion's musical character, and mixed-emotion music.

An LSTM trained on one emotion's clips learns its note patterns but drifts: a "sad" piece can
come out fast, loud or major. Music psychology and the data agree on what carries emotion in
piano music: tempo/note density and dynamics (arousal), mode and register (valence). Steering acts
at sampling time, so the LSTM still writes every note and hears its own (steered) notes back:

- mode and key: a pitch-logit bias shaped like the Krumhansl profile of a major or minor key
  (tonic, third and fifth favoured), in the key of that mode closest to the primer;
- register: a wide Gaussian pull of the pitch logits toward the emotion's typical pitch centre,
  then whole-octave transposition to it (key and intervals unchanged);
- note density: steps (and durations) are scaled so onsets per second match the emotion's median;
- dynamics: velocities are shifted/scaled to the emotion's median loudness and spread;
- variety: a pitch used among the last 8 notes is penalised (as language models penalise
  repeats), so slow, strongly keyed pieces do not collapse onto a few notes or loop; and each
  piece's loudness, density and note-length targets are jittered (seeded) around the emotion's,
  so pieces differ from each other as real clips do.

The per-emotion targets are medians of real labelled clips (``fit_targets``), shipped as JSON.
A face is rarely one emotion: ``generate_blend`` takes the whole probability vector, mixes the
targets by those weights and lets each likely emotion's LSTM write its share of the piece.
"""
from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from emolib import MUSIC_EMOTIONS
from emolib.errors import EmolibError
from emolib.files import write_json
from emolib.paths import MODELS_DIR

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pretty_midi

#: How far (x the real gap) each emotion's targets are pushed from the all-emotion mean.
CONTRAST = 1.5
#: Shipped per-emotion targets (written by fit_targets).
DEFAULT_TARGETS = MODELS_DIR / "steer" / "targets.json"


@dataclass(frozen=True)
class Steering:
    """What one piece is steered toward, and how hard.

    ``mode`` runs from -1 (minor) to +1 (major); 0 leaves mode alone. Strengths are in logits
    (``mode_strength``, ``register_strength``) or 0..1 (``dynamics``, ``density``): 0 turns a
    mechanism off, so ``Steering(...).off()`` reproduces the plain generator.
    """

    onset_density: float      # distinct onsets per second
    pitch_mean: float         # register centre (MIDI pitch)
    pitch_std: float          # register spread
    mode: float               # -1 minor .. +1 major
    velocity_mean: float
    velocity_std: float
    chord_size: float = 1.0   # notes per onset
    duration: float = 0.0     # geometric-mean note duration, seconds (0: leave durations alone)
    mode_strength: float = 2.0
    register_strength: float = 1.0
    density: float = 1.0
    dynamics: float = 1.0
    repetition: float = 0.7   # logit penalty per use of a pitch among the last 8 notes (variety)
    variety: float = 1.0      # per-piece seeded jitter of the loudness/density/length targets (0: none)

    def off(self) -> "Steering":
        """The same targets with every mechanism switched off."""
        return replace(self, mode_strength=0.0, register_strength=0.0, density=0.0, dynamics=0.0, repetition=0.0,
                       variety=0.0)

    def scaled(self, factor: float) -> "Steering":
        """All strengths multiplied by ``factor`` (0 = off, 1 = default)."""
        return replace(self, mode_strength=self.mode_strength * factor,
                       register_strength=self.register_strength * factor,
                       density=min(1.0, self.density * factor), dynamics=min(1.0, self.dynamics * factor),
                       repetition=self.repetition * factor)


# --------------------------------------------------------------------------- targets
def fit_targets(midi_dir: str | os.PathLike | None = None, out: str | os.PathLike | None = DEFAULT_TARGETS,
                emotions: Sequence[str] = MUSIC_EMOTIONS, cache_dir: str | os.PathLike | None = None,
                command: str | None = None) -> dict[str, dict[str, float]]:
    """Per-emotion steering targets: medians of the real clips' musical features (written as JSON)."""
    from emolib import judge

    clips = judge.list_clips(midi_dir, emotions)
    X, ok, _ = judge.feature_matrix([c.path for c in clips], cache_dir=cache_dir)
    labels = np.array([clips[i].emotion for i in ok])
    col = {n: i for i, n in enumerate(judge.FEATURE_NAMES)}
    targets: dict[str, Any] = {}
    for e in emotions:
        F = X[labels == e]
        targets[e] = {
            "onset_density": float(np.median(F[:, col["onset_density"]])),
            "pitch_mean": float(np.median(F[:, col["pitch_mean"]])),
            "pitch_std": float(np.median(F[:, col["pitch_std"]])),
            "mode": float(np.mean(F[:, col["mode_major"]] > 0) * 2 - 1),
            "velocity_mean": float(np.median(F[:, col["velocity_mean"]])),
            "velocity_std": float(np.median(F[:, col["velocity_std"]])),
            "chord_size": float(np.median(F[:, col["chord_size"]])),
            "duration": float(np.exp(np.median(F[:, col["duration_log_mean"]]))),
            "clips": int(len(F)),
        }
    if out is not None:
        write_json(out, {"targets": targets, "source": str(midi_dir or "DATA/music/midi"),
                         "command": command or judge.command_line(),
                         "note": "medians of emolib.judge.features over the labelled clips; mode = "
                                 "2 * share of clips leaning major - 1"})
    return targets


def load_targets(path: str | os.PathLike | None = None) -> dict[str, dict[str, float]]:
    """The per-emotion targets (shipped ones by default)."""
    import json

    path = Path(path) if path is not None else DEFAULT_TARGETS
    if not path.is_file():
        raise EmolibError("steering targets not found (make them with emolib.steer.fit_targets)", path)
    return json.loads(path.read_text())["targets"]


def steering_for(emotion: str, strength: float = 1.0, targets: Mapping[str, Mapping[str, float]] | None = None
                 ) -> Steering:
    """The default steering of one emotion's pieces."""
    return blend_steering({emotion: 1.0}, strength, targets)


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


def blend_steering(probabilities: Mapping[str, float], strength: float = 1.0,
                   targets: Mapping[str, Mapping[str, float]] | None = None, contrast: float = CONTRAST) -> Steering:
    """Steering toward the probability-weighted mix of the emotions' targets.

    Each emotion's targets are first pushed ``contrast`` times as far from the all-emotion mean
    as the real clips' medians are (caricature: real clips of neighbouring emotions overlap, the
    generated ones should say their emotion clearly); mode becomes the emotion's majority mode
    (+1 major, -1 minor) and mixes to values in between.
    """
    targets = load_targets() if targets is None else targets
    probs = normalise(probabilities)
    keys = ("onset_density", "pitch_mean", "pitch_std", "velocity_mean", "velocity_std", "chord_size", "duration")
    logs = {"onset_density", "duration"}  # mixed geometrically: a blend of 2 and 8 onsets/s sounds like 4
    tr = {k: {e: (np.log(t[k]) if k in logs else t[k]) for e, t in targets.items()} for k in keys}
    mix: dict[str, float] = {}
    for k in keys:
        centre = float(np.mean(list(tr[k].values())))
        v = sum(p * (centre + contrast * (tr[k][e] - centre)) for e, p in probs.items() if p > 0)
        mix[k] = float(np.exp(v)) if k in logs else float(v)
    mix["chord_size"] = max(mix["chord_size"], 1.0)
    mix["mode"] = float(sum(p * np.sign(targets[e]["mode"]) for e, p in probs.items() if p > 0))
    return Steering(**mix).scaled(strength)


# --------------------------------------------------------------------------- steered generation
def _key_bias(tonic: int, major: bool) -> np.ndarray:
    """A z-scored Krumhansl profile of the key, laid over all 128 pitches."""
    from emolib.judge import KK_MAJOR, KK_MINOR

    prof = np.roll(KK_MAJOR if major else KK_MINOR, tonic)
    prof = (prof - prof.mean()) / prof.std()
    return prof[np.arange(128) % 12]


def _primer_key(primer: np.ndarray, major: bool) -> int:
    """Tonic of the key of the wanted mode that best fits the primer's pitch classes."""
    from emolib.judge import key_correlations

    pc = np.bincount(primer[:, 0].astype(int) % 12, weights=np.maximum(primer[:, 2], 0.05), minlength=12)
    maj, mnr = key_correlations(pc)
    return int((maj if major else mnr).argmax())


def steered(generator: Any, steering: Steering) -> Any:
    """A steered view of a melody generator (``emolib.melody.load_generator(...)``): a
    ``melody.Generator`` sharing its weights, with steered ``generate``/``generate_notes``;
    the original generator is untouched."""
    return _steered_class()(generator, steering)


@functools.lru_cache(maxsize=1)
def _steered_class():
    from emolib import melody

    class _Steered(melody.Generator):
        """A melody.Generator whose sampling is steered (see the module docstring)."""

        def __init__(self, base: Any, steering: Steering):  # noqa: D107 - shares base's weights, no copy
            self.__dict__.update(base.__dict__)
            self.base = base
            self.steering = steering
            self._bias = np.zeros(128)
            self._chord_p = 0.0
            self._recent: list[int] = []

        def sample(self, out, rng, temperature: float = 1.0):
            logits = out.pitch_logits / max(float(temperature), 1e-3) + self._pitch_mask + self._bias
            if self.steering.repetition and self._recent:
                logits = logits - self.steering.repetition * np.bincount(self._recent, minlength=128)
            p = np.exp(logits - logits.max())
            cdf = np.cumsum(p)
            pitch = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
            pitch = min(max(pitch, melody.PITCH_LOW), melody.PITCH_HIGH)
            self._recent = (self._recent + [pitch])[-8:]
            step = min(max(out.step, 0.0), melody.MAX_STEP)
            if self._chord_p and rng.random() < self._chord_p:
                step = 0.0  # sound this note with the previous one (chords, as in the training clips)
            duration = min(max(out.duration, melody.MIN_DURATION), melody.MAX_DURATION)
            return pitch, step, duration

        def generate_notes(self, seconds: float = 40.0, temperature: float = 1.0, seed: int | None = None,
                           primer: np.ndarray | None = None) -> "pd.DataFrame":
            s = self.steering
            if primer is None:  # the primer the plain generator would pick for this seed
                primer = self.primers[int(np.random.default_rng(seed).integers(len(self.primers)))]
                use = None
            else:
                use = primer
            primer = np.asarray(primer, np.float32)
            bias = np.zeros(128)
            if s.mode_strength and s.mode:
                major = s.mode > 0
                bias += s.mode_strength * abs(s.mode) * _key_bias(_primer_key(primer, major), major)
            if s.register_strength:  # a wide pull: reins in outliers without narrowing the range much
                width = max(s.pitch_std, 4.0) * 2.0
                bias -= s.register_strength * 0.5 * ((np.arange(128) - s.pitch_mean) / width) ** 2
            self._bias = bias
            if s.variety > 0:  # pieces differ like real clips do, not all pinned to one loudness/tempo
                jitter = np.random.default_rng(None if seed is None else [int(seed), 0x5EED]).normal(size=3) * s.variety
                s = replace(s, velocity_mean=s.velocity_mean + 0.35 * s.velocity_std * jitter[0],
                            onset_density=s.onset_density * float(np.exp(0.12 * jitter[1])),
                            duration=s.duration * float(np.exp(0.12 * jitter[2])))
            self._chord_p = min(max(1.0 - 1.0 / max(s.chord_size, 1.0), 0.0), 0.8) * s.density
            self._recent = []
            table = melody.Generator.generate_notes(self, seconds, temperature, seed, use)
            if s.density > 0 and len(table) > 1:
                # stretch time so onsets/second match the target; the LSTM's own rhythm is kept
                # (it is regenerated for seconds/stretch with the same seed, then stretched)
                stretch = float(np.clip((_onset_density(table, seconds) / s.onset_density) ** s.density, 0.25, 4.0))
                if abs(np.log(stretch)) > 0.05:
                    self._recent = []
                    table = melody.Generator.generate_notes(self, seconds / stretch, temperature, seed, use)
                    for col in ("start", "end", "step", "duration"):
                        table[col] = table[col] * stretch
            if s.duration > 0 and s.density > 0 and len(table):
                # articulation: note lengths toward the emotion's typical (geometric-mean) duration
                d = table["duration"].to_numpy(np.float64)
                factor = (s.duration / float(np.exp(np.mean(np.log(np.maximum(d, 1e-3)))))) ** s.density
                table["duration"] = np.clip(d * factor, melody.MIN_DURATION, None)
                table["end"] = np.minimum(table["start"] + table["duration"], seconds)
                table["duration"] = table["end"] - table["start"]
            if s.register_strength > 0 and len(table):
                # register: whole octaves toward the emotion's pitch centre (keys and intervals kept)
                pitch = table["pitch"].to_numpy()
                octaves = int(np.round((s.pitch_mean - float(np.mean(pitch))) / 12.0))
                while octaves and (pitch.min() + 12 * octaves < melody.PITCH_LOW or pitch.max() + 12 * octaves > melody.PITCH_HIGH):
                    octaves -= int(np.sign(octaves))
                table["pitch"] = pitch + 12 * octaves
            if s.dynamics > 0 and len(table):
                v = table["velocity"].to_numpy(np.float64)
                mean = v.mean()
                spread = max(v.std(), 3.0)
                want_mean = mean + s.dynamics * (s.velocity_mean - mean)
                want_std = spread * (s.velocity_std / spread) ** s.dynamics
                # keep the generator's own phrasing (relative loudness), move level and spread
                shaped = want_mean + (v - mean) * (want_std / spread)
                table["velocity"] = np.clip(np.round(shaped), 1, 127).astype(int)
            return table

    return _Steered


def _onset_density(table: "pd.DataFrame", seconds: float) -> float:
    start = np.sort(table["start"].to_numpy(np.float64))
    if len(start) == 0:
        return 0.0
    distinct = 1 + int(np.sum(np.diff(start) > 0.03))
    return distinct / max(seconds, 1e-3)


# --------------------------------------------------------------------------- public entry points
def generate(emotion: str, seconds: float = 40.0, temperature: float = 1.0, seed: int | None = None,
             strength: float = 1.0, models: str | os.PathLike | None = None, program: int = 0
             ) -> "pretty_midi.PrettyMIDI":
    """One piece in ``emotion`` from its LSTM, steered toward the emotion's character.

    ``strength`` 0 gives the plain generator's piece, 1 the default steering. ``models`` is a
    folder with ``<emotion>/`` generator folders (default: the shipped ones).
    """
    from emolib import melody

    gen = melody.load_generator(emotion, path=None if models is None else Path(models) / emotion)
    if strength <= 0:
        return gen.generate(seconds=seconds, temperature=temperature, seed=seed, program=program)
    return steered(gen, steering_for(emotion, strength)).generate(seconds=seconds, temperature=temperature,
                                                                  seed=seed, program=program)


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
                   seed: int | None = None, strength: float = 1.0, min_share: float = 0.15,
                   models: str | os.PathLike | None = None, program: int = 0) -> "pretty_midi.PrettyMIDI":
    """Music from a whole probability vector (e.g. a face that is 60% sad, 30% relax, 10% angry).

    Each emotion with at least ``min_share`` of the probability writes a section with its own LSTM,
    its length in proportion (most likely emotion first); every section is steered toward the
    probability-weighted mix of all emotions' targets, so tempo, loudness, register and mode sit
    between the emotions in proportion. A one-hot vector gives exactly ``generate(emotion)``.
    """
    import pandas as pd

    from emolib import melody
    from emolib.notes import notes_to_midi

    probs = normalise(probabilities)
    plan = blend_plan(probs, seconds, min_share)
    if len(plan) == 1 and probs[plan[0][0]] == 1.0:
        return generate(plan[0][0], seconds, temperature, seed, strength, models, program)
    steering = blend_steering(probs, strength)
    parts, offset = [], 0.0
    for k, (emotion, length) in enumerate(plan):
        gen = melody.load_generator(emotion, path=None if models is None else Path(models) / emotion)
        part_seed = None if seed is None else seed * 1009 + k
        table = steered(gen, steering).generate_notes(seconds=length, temperature=temperature, seed=part_seed)
        table = table.assign(start=table["start"] + offset, end=table["end"] + offset)
        parts.append(table)
        offset += length
    table = pd.concat(parts, ignore_index=True)
    table["step"] = np.diff(table["start"].to_numpy(), prepend=0.0)
    name = "emolib blend " + " ".join(f"{e}:{probs[e]:.2f}" for e, _ in plan)
    return notes_to_midi(table, program=program, instrument_name=name)


def describe_blend(probabilities: Mapping[str, float], seconds: float = 40.0, strength: float = 1.0,
                   min_share: float = 0.15) -> dict[str, Any]:
    """What generate_blend will do for these probabilities (sections and mixed targets), JSON-ready."""
    return {"sections": [{"emotion": e, "seconds": round(s, 3)} for e, s in blend_plan(probabilities, seconds, min_share)],
            "steering": asdict(blend_steering(probabilities, strength))}
