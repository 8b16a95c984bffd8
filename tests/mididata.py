"""Tiny synthetic music for the tests: MIDI pieces and corpora, and random-weight note LSTMs (no TensorFlow).

Every test that needs a MIDI builds it here: ``midi`` (tracks of (pitch, start, end, velocity)),
``melody_midi`` (a one-piano line at a fixed onset spacing), ``scale_piece`` (a scale walk with
tonic triads, for feature and steering tests) and ``make_corpus``/``make_dataset`` (folders).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pretty_midi

from emolib import melody, notes

C_MAJOR = [60, 62, 64, 65, 67, 69, 71]
A_MINOR = [57, 59, 60, 62, 64, 65, 68]  # harmonic minor: the raised 7th makes it unmistakable


def midi(*tracks: Sequence[tuple[int, float, float, int]], drums: Sequence[float] = (),
         path: Path | None = None) -> pretty_midi.PrettyMIDI:
    """A PrettyMIDI with one instrument per track (program = its index; notes (pitch, start, end, velocity))
    and a drum kit hitting at ``drums`` onsets; written to ``path`` when given."""
    pm = pretty_midi.PrettyMIDI()
    for k, track in enumerate(tracks):
        inst = pretty_midi.Instrument(program=k)
        inst.notes = [pretty_midi.Note(velocity=int(v), pitch=int(p), start=float(s), end=float(e))
                      for p, s, e, v in track]
        pm.instruments.append(inst)
    if len(drums):
        kit = pretty_midi.Instrument(program=0, is_drum=True)
        kit.notes = [pretty_midi.Note(velocity=100, pitch=36, start=s, end=s + 0.1) for s in drums]
        pm.instruments.append(kit)
    if path is not None:
        pm.write(str(path))
    return pm


def melody_midi(pitches: Sequence[int], first: float = 0.0, spacing: float = 0.25, length: float | None = None,
                velocity: int = 90) -> pretty_midi.PrettyMIDI:
    """One piano playing ``pitches`` in turn: onsets ``first + k * spacing``, each ``length`` s (default: spacing)."""
    length = spacing if length is None else length
    return midi([(p, first + k * spacing, first + k * spacing + length, velocity) for k, p in enumerate(pitches)])


def scale_piece(scale: list[int], seconds: float, step: float, velocity: int, chord_every: int = 4,
                octave_shift: int = 0) -> pretty_midi.PrettyMIDI:
    """A one-piano piece walking up and down ``scale``, a triad on the tonic every ``chord_every`` notes."""
    walk = scale + scale[-2:0:-1]
    rows: list[tuple[int, float, float, int]] = []
    t, i = 0.0, 0
    while t < seconds:
        rows.append((walk[i % len(walk)] + 12 * octave_shift, t, t + step * 0.9, velocity))
        if i % chord_every == 0:
            root = scale[0] - 12 + 12 * octave_shift
            third = scale[2] - 12 + 12 * octave_shift
            rows += [(q, t, t + step * 3, velocity - 10) for q in (root, third, root + 7)]
        t += step
        i += 1
    return midi(rows)


def make_corpus(root: Path, emotion: str = "happy", songs: int = 4, clips: int = 2, n_notes: int = 90, seed: int = 0,
                prefix: str = "emopia_Q1_song{s}x_{c}", broken: bool = True) -> Path:
    """An emotion folder of EMOPIA-named clips (``root/emotion``): arpeggios over chords, with varied
    rhythm and dynamics, plus one unreadable ``broken.mid`` (a batch must go past it)."""
    rng = np.random.default_rng(seed)
    folder = root / emotion
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(songs):
        for c in range(clips):
            base = int(rng.integers(48, 72))
            t, rows = 0.0, []
            for k in range(n_notes):
                pitch = base + [0, 4, 7, 12, 7, 4][k % 6] + int(rng.integers(-2, 3))
                rows.append((pitch, t, float(rng.choice([0.25, 0.5, 1.0])), int(rng.integers(50, 110))))
                t += float(rng.choice([0.0, 0.25, 0.5]))
            pm = notes.notes_to_midi({"pitch": [r[0] for r in rows], "start": [r[1] for r in rows],
                                      "duration": [r[2] for r in rows]}, velocity=[r[3] for r in rows])
            pm.write(str(folder / f"{prefix.format(s=s, c=c)}.mid"))
    if broken:
        (folder / "broken.mid").write_bytes(b"not midi")
    return root


def make_dataset(root: Path, emotions=("happy", "sad", "angry", "relax"), songs: int = 6,
                 pop: int = 6) -> tuple[Path, Path]:
    """A labelled ``midi/<emotion>/`` tree and an unlabelled ``pop909/`` folder; returns (midi, pop909)."""
    for k, emotion in enumerate(emotions):
        make_corpus(root / "midi", emotion, songs=songs, clips=2, seed=10 + k)
    make_corpus(root, "pop909", songs=pop, clips=1, n_notes=160, seed=99, prefix="pop909_{s:03d}", broken=False)
    return root / "midi", root / "pop909"


SMALL = melody.ModelConfig(units=24, layers=2, embed=(4, 8, 4, 4), head_units=16, dropout=0.0)


def random_weights(config: melody.ModelConfig = SMALL, seed: int = 0, scale: float = 0.3) -> dict[str, np.ndarray]:
    """Weights shaped like ``melody.export_weights`` of a model built with ``config``, drawn at random."""
    rng = np.random.default_rng(seed)
    fields, vocab, u, h = notes.TOKEN_FIELDS, notes.VOCAB, config.units, config.head_units
    w = {f"in_{f}/0": rng.normal(0, scale, (vocab[f], d)) for f, d in zip(fields, config.embed)}
    size = sum(config.embed)
    for k in range(config.layers):
        w[f"lstm_{k}/0"] = rng.normal(0, scale / 2, (size if k == 0 else u, 4 * u))
        w[f"lstm_{k}/1"] = rng.normal(0, scale / 2, (u, 4 * u))
        w[f"lstm_{k}/2"] = np.zeros(4 * u)
    for j, f in enumerate(fields):
        w[f"{f}_from_h/0"], w[f"{f}_from_h/1"] = rng.normal(0, scale, (u, h)), np.zeros(h)
        for g in fields[:j]:
            w[f"{f}_from_{g}/0"] = rng.normal(0, scale, (vocab[g], h))
        w[f"{f}/0"], w[f"{f}/1"] = rng.normal(0, scale, (h, vocab[f])), np.zeros(vocab[f])
    # a plausible random "player": steps around 0.25 s, pitches in the middle of the keyboard
    w["step/1"][np.searchsorted(notes.STEP_EDGES, 0.25)] = 3.0
    w["pitch/1"][48:84] = 2.0
    w["duration/1"][np.searchsorted(notes.DURATION_EDGES, 0.4)] = 2.0
    w["velocity/1"][8] = 2.0
    if config.held_input:  # as fine-tuning starts it (a held key HELD_PRIOR nats less likely), plus noise
        w["pitch_from_held/0"] = rng.normal(0, scale / 10, (vocab["pitch"], h))
        w["pitch_held/0"] = (-melody.HELD_PRIOR * np.eye(vocab["pitch"]) + rng.normal(0, 0.1, (vocab["pitch"],) * 2)
                             ) / melody.HELD_SCALE
    return {k: v.astype(np.float32) for k, v in w.items()}


def random_generator(seed: int = 0, config: melody.ModelConfig = SMALL,
                     emotion: str = "test") -> melody.MelodyGenerator:
    """A MelodyGenerator with random weights and random primers (for sampling and steering tests)."""
    rng = np.random.default_rng(seed + 1)
    primers = np.stack([np.stack([rng.integers(10, 30, 16), rng.integers(55, 75, 16), rng.integers(15, 30, 16),
                                  np.full(16, 9)], axis=1) for _ in range(4)])
    return melody.MelodyGenerator(random_weights(config, seed), config, primers, emotion=emotion)


def stuck_generator(seed: int = 5) -> melody.MelodyGenerator:
    """A random generator made to always wait 2 s and always play pitch 50: what the guards are for."""
    gen = random_generator(seed=seed)
    gen.weights["step/1"][:] = -10.0
    gen.weights["step/1"][-1] = 10.0
    gen.weights["pitch/1"][:] = -10.0
    gen.weights["pitch/1"][50] = 10.0
    return melody.MelodyGenerator(gen.weights, gen.config, gen.primers)


def pitch_runs(pitches: Sequence[int]) -> np.ndarray:
    """Lengths of the runs of one pitch repeated in a row (the MAX_REPEATS guard's measure)."""
    return np.diff(np.flatnonzero(np.diff(np.r_[-1, np.asarray(pitches), -1]) != 0))


def chord_moves(windows: np.ndarray) -> np.ndarray:
    """Pitch moves between neighbouring notes of one chord (a token and the step-0 tokens after it),
    over token windows (count, length, 4): all negative when every chord is listed high to low."""
    chord = np.cumsum(windows[:, :, 0] != 0, axis=1)
    return np.diff(windows[:, :, 1], axis=1)[np.diff(chord, axis=1) == 0]
