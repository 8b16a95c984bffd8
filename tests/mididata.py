"""Tiny synthetic music for the tests: MIDI corpora on disk and random-weight note LSTMs (no TensorFlow)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from emolib import melody, notes


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


def make_dataset(root: Path, emotions=("happy", "sad", "angry", "relax"), songs: int = 6, pop: int = 6) -> tuple[Path, Path]:
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
    return {k: v.astype(np.float32) for k, v in w.items()}


def random_generator(seed: int = 0, config: melody.ModelConfig = SMALL, emotion: str = "test") -> melody.MelodyGenerator:
    """A MelodyGenerator with random weights and random primers (for sampling and steering tests)."""
    rng = np.random.default_rng(seed + 1)
    primers = np.stack([np.stack([rng.integers(10, 30, 16), rng.integers(55, 75, 16), rng.integers(15, 30, 16),
                                  np.full(16, 9)], axis=1) for _ in range(4)])
    return melody.MelodyGenerator(random_weights(config, seed), config, primers, emotion=emotion)
