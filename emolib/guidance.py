"""Guidance from the base: an emotion's LSTM sampled with the pretrained base beside it (``Guided``).

``generator`` gives what ``emolib.steer`` plays: the emotion's LSTM, guided ``GUIDANCE`` times
further from the base it was fine-tuned from (``base_of``).
"""
from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from emolib import int8, melody
from emolib.errors import EmolibError

__all__ = ["GUIDANCE", "PLAUSIBILITY", "IMPLAUSIBLE", "Guided", "generator", "base_of"]

#: Guidance at strength 1 (``Guided``): how many times further than the fine-tuning went, away from
#: the base, each emotion's LSTM is sampled. Chosen on the validation songs (models/melody/README.md,
#: "Guidance from the base").
GUIDANCE = 2.0
#: Guidance only among the values the emotion's LSTM finds plausible (``Guided``): at least PLAUSIBILITY
#: times its likeliest value's probability (0: every value); without it, guidance can lift a value both
#: LSTMs find unlikely (a wrong note). Off: 0.01 was chosen on the validation songs, not kept after the
#: test songs (models/melody/README.md, "Plausible values only, and keys still held").
PLAUSIBILITY = 0.0
#: How far below the rest an implausible value's logit falls: far enough to be never drawn, finite
#: so that a part whose plausible values the guards all forbid can still be drawn.
IMPLAUSIBLE = 1e4


def _same_architecture(a: melody.MelodyGenerator, b: melody.MelodyGenerator) -> bool:
    """Whether two note LSTMs can run as one (configs equal but for dropout, which only trains, the
    held-key input, which ``Guided`` gives each LSTM that has it, and the key frame, which is the data's)."""
    def shape(g: melody.MelodyGenerator) -> melody.ModelConfig:
        return replace(g.config, dropout=0.0, held_input=False, key_frame=False)
    return shape(a) == shape(b)


class Guided(melody.MelodyGenerator):
    """An emotion's LSTM sampled with the pretrained base beside it: each part's log-probabilities
    move ``weight`` times further along (emotion - base), p ~ p_emotion^(1 + w) / p_base^w
    (classifier-free guidance; Sanchez et al. 2023 for language models).

    What fine-tuning on the emotion's music changed is amplified; what all piano music shares (and
    the base knows as well) is not. Unlike the mode nudge it needs no hand-made feature: it reads
    only the two LSTMs. The two run as one: their weights are stacked, so a note costs the numpy
    calls of one LSTM. The primers and the Keras model (``model``) are the emotion's. Each LSTM is told
    which keys are still down only if it was trained so (``ModelConfig.held_input``).
    """

    def __init__(self, tuned: melody.MelodyGenerator, base: melody.MelodyGenerator, weight: float,
                 plausibility: float = 0.0) -> None:
        if not 0.0 <= plausibility < 1.0:
            raise EmolibError(f"plausibility must be in [0, 1) (0: every value), got {plausibility}")
        if not _same_architecture(tuned, base):
            raise EmolibError(f"guidance needs an LSTM fine-tuned from this base (the same architecture): "
                              f"{tuned.config} against the base's {base.config}; generate with steering 0, or put "
                              f"the base it was fine-tuned from beside its folder as base/", tuned.path)
        self.__dict__.update(vars(tuned))
        self._primed = {}  # states of the pair, not the emotion's alone
        self.tuned, self.base, self.weight = tuned, base, float(weight)
        self.plausibility = float(plausibility)
        self._log_floor = np.log(plausibility) if plausibility > 0 else -np.inf
        pair = (tuned, base)
        self._in = [np.stack([g._in[i] for g in pair]) for i in range(len(tuned._in))]
        self._lstm = [(int8.Int8Rows.stack([g._lstm[k][0] for g in pair]), np.stack([g._lstm[k][1] for g in pair]))
                      for k in range(len(tuned._lstm))]
        told = next((g._held for g in pair if g._held is not None), None)  # zero for an LSTM trained without
        if told is not None:
            self._held = (np.stack([np.zeros_like(told[0]) if g._held is None else g._held[0] for g in pair]),
                          np.stack([np.zeros_like(told[1]) if g._held is None else g._held[1] for g in pair]))
        self._from_h = int8.Int8Rows.stack([g._from_h for g in pair])
        self._from_h_bias = np.stack([g._from_h_bias for g in pair])
        self._heads = {part: (rows, [np.stack(t) for t in zip(*(g._heads[part][1] for g in pair))],
                              np.stack([g._heads[part][2] for g in pair]), np.stack([g._heads[part][3] for g in pair]))
                       for part, (rows, *_) in tuned._heads.items()}

    def initial_state(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Zero (h, c) per layer, one row per LSTM (emotion, base)."""
        n = self.config.units
        return [(np.zeros((2, n), np.float32), np.zeros((2, n), np.float32)) for _ in range(self.config.layers)]

    @staticmethod
    def _head_out(x: np.ndarray, w_out: np.ndarray) -> np.ndarray:
        return np.matmul(x[:, None, :], w_out)[:, 0]

    def part_logits(self, part: str, hidden: np.ndarray, chosen: Mapping[str, int],
                    down: np.ndarray | None = None) -> np.ndarray:
        """The guided logits: (1 + w) * emotion - w * base (equal, up to a constant, to the emotion's
        log-probabilities plus w times their difference from the base's); values the emotion's LSTM
        finds implausible (``plausibility``, as in contrastive decoding, Li et al. 2023) fall
        ``IMPLAUSIBLE`` below, out of reach unless the guards leave nothing else."""
        out = super().part_logits(part, hidden, chosen, down)  # one row per LSTM; held-key terms zero where untold
        guided = (1.0 + self.weight) * out[0] - self.weight * out[1]
        if self.plausibility > 0:
            guided = np.where(out[0] >= out[0].max() + self._log_floor, guided, guided - IMPLAUSIBLE)
        return guided


def base_of(tuned: melody.MelodyGenerator) -> melody.MelodyGenerator | None:
    """The base ``tuned`` was fine-tuned from: ``base/`` beside its model folder (the shipped models'
    case), else the one its ``metrics.json`` names as ``init`` when that still exists, else the
    shipped base (``emolib retrain`` and notebook 03 start from it). None: trained from scratch."""
    if tuned.path is None:  # built in memory
        return melody.load_generator("base")
    folder = tuned.path.parent
    beside = folder.parent / "base"
    if (beside / melody.BUNDLE_FILE).is_file() and beside.resolve() != folder.resolve():
        return melody.load_generator("base", beside)
    try:
        metrics = json.loads((folder / melody.METRICS_FILE).read_text())
    except (OSError, ValueError):
        metrics = {}
    if "init" in metrics and metrics["init"] is None:
        return None
    init = Path(str(metrics.get("init") or ""))
    return melody.load_generator("base", init if str(init) != "." and init.exists() else melody.BASE_DIR)


def generator(emotion: str, path: str | os.PathLike | None = None, guidance: float | None = None,
              plausibility: float | None = None) -> melody.MelodyGenerator:
    """``emotion``'s LSTM guided away from its base by ``guidance`` (None: ``GUIDANCE``; 0: the LSTM
    alone), among the values it finds plausible (None: ``PLAUSIBILITY``). ``path``: what
    ``melody.load_generator`` takes (default: the shipped model).

    An LSTM trained from scratch, or one whose base has another architecture (an older bundle), is
    played alone, with a warning for the second: there is nothing sound to guide it against.
    """
    guidance = GUIDANCE if guidance is None else guidance
    if not guidance >= 0.0:
        raise EmolibError(f"guidance must be >= 0 (0: none), got {guidance}")
    tuned = melody.load_generator(emotion, path=path)
    base = base_of(tuned) if guidance > 0 else None
    if base is None:
        return tuned
    if not _same_architecture(tuned, base):
        warnings.warn(f"{tuned.path}: its architecture differs from its base's ({base.path}); playing it "
                      f"without guidance", stacklevel=2)
        return tuned
    return _guided(tuned, base, float(guidance), float(PLAUSIBILITY if plausibility is None else plausibility))


@functools.lru_cache(maxsize=4)
def _guided(tuned: melody.MelodyGenerator, base: melody.MelodyGenerator, weight: float, plausibility: float
            ) -> Guided:
    """One ``Guided`` per pair and setting (stacking the two LSTMs' weights copies about 9 MB; the
    loaded generators are cached, so every piece of an emotion asks for the same pair)."""
    return Guided(tuned, base, weight, plausibility)
