"""How each part of a generated note is drawn: temperature and nucleus (top-p) per part, and the
hook through which steering shifts the logits (``emolib.steer``) before each draw."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

import numpy as np

from emolib.errors import EmolibError
from emolib.int8 import compiled
from emolib.notes import TOKEN_FIELDS

__all__ = ["TOP_P", "Sampling", "Steer"]

#: Default nucleus per part, chosen on the validation songs (models/melody/README.md, "A narrower
#: nucleus for pitch"): a pitch is drawn from the likeliest values holding 90% of the probability, which
#: keeps more notes on the scale; the other parts from 95%.
TOP_P: Mapping[str, float] = MappingProxyType({"step": 0.95, "pitch": 0.9, "duration": 0.95, "velocity": 0.95})


@dataclass(frozen=True)
class Sampling:
    """How each part of a note is drawn: temperature (0 = most likely) and nucleus ``top_p``
    (draw only from the most likely values holding this much probability)."""

    temperature: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(TOKEN_FIELDS, 1.0))
    top_p: Mapping[str, float] = field(default_factory=lambda: dict(TOP_P))

    @classmethod
    def of(cls, temperature: float | Mapping[str, float] = 1.0, top_p: float | Mapping[str, float] | None = None
           ) -> Sampling:
        """One value for every part, or a mapping part -> value (missing parts: temperature 1, top-p
        ``TOP_P``'s); ``top_p`` None: ``TOP_P``."""
        def per_part(v: float | Mapping[str, float], default: Mapping[str, float]) -> dict[str, float]:
            if isinstance(v, Mapping):
                unknown = set(v) - set(TOKEN_FIELDS)
                if unknown:
                    raise EmolibError(f"unknown note part(s) {sorted(unknown)}; parts: {', '.join(TOKEN_FIELDS)}")
                return {f: float(v.get(f, default[f])) for f in TOKEN_FIELDS}
            return dict.fromkeys(TOKEN_FIELDS, float(v))
        t = per_part(temperature, dict.fromkeys(TOKEN_FIELDS, 1.0))
        p = per_part(TOP_P if top_p is None else top_p, TOP_P)
        if any(v < 0 or not np.isfinite(v) for v in t.values()):
            raise EmolibError(f"temperature must be >= 0 (0 picks the most likely value), got {temperature}")
        if any(not 0 < v <= 1 for v in p.values()):
            raise EmolibError(f"top_p must be in (0, 1], got {top_p}")
        return cls(t, p)

    def draw(self, part: str, logits: np.ndarray, rng: np.random.Generator) -> int:
        """One value of ``part`` from its logits."""
        t = self.temperature[part]
        if t == 0:
            return int(np.argmax(logits))
        z = logits if t == 1.0 else logits / t
        return int(_nucleus(np.asarray(z, np.float64), self.top_p[part], rng.random()))


@compiled(nogil=True)
def _nucleus(z: np.ndarray, top_p: float, u: float) -> int:  # pragma: no cover  (compiled)
    """The value at ``u`` (uniform in [0, 1)) of the likeliest values holding ``top_p`` of the
    probability (``top_p`` >= 1: all of them, in index order), from logits ``z``; compiled, as it runs
    four times per note. Plain loops, not numpy's sort and search, which numba takes seconds to
    compile on first use; each sum runs in numpy's order, so it draws what numpy's float64 definition
    of the nucleus draws (tested)."""
    n, top = len(z), -np.inf
    for i in range(n):
        top = max(top, z[i])
    p = np.empty(n)  # unnormalised: the nucleus and the draw scale by the total
    for i in range(n):
        p[i] = math.exp(z[i] - top)
    order = np.arange(n)
    if top_p < 1.0:  # the likeliest first, ties in index order (an insertion sort: stable)
        for i in range(1, n):
            j, v = i, order[i]
            while j > 0 and p[order[j - 1]] < p[v]:
                order[j] = order[j - 1]
                j -= 1
            order[j] = v
    cum = np.empty(n)
    total = 0.0
    for i in range(n):
        total += p[order[i]]
        cum[i] = total
    k = n
    if top_p < 1.0:
        k = 1
        while cum[k - 1] < top_p * total:  # the nucleus: up to the first value reaching top_p
            k += 1
    for j in range(k):
        if cum[j] > u * cum[k - 1]:
            return order[j]
    return order[k - 1]


class Steer(Protocol):
    """A sampling-time hook (see ``emolib.steer``): it may shift each part's logits before the draw,
    and (``next_notes``, optional) play notes again; notes played again must pass the guards too."""

    def begin(self, primer: np.ndarray, rng: np.random.Generator) -> None:
        """Called once per piece with the primer tokens."""

    def logits(self, part: str, logits: np.ndarray, chosen: Mapping[str, int], time: float) -> np.ndarray:
        """The logits of ``part`` to draw from, given the parts of this note chosen so far."""

    def next_notes(self, tokens: Sequence[np.ndarray], drawn: np.ndarray) -> Sequence[np.ndarray]:
        """What comes after ``tokens`` now that ``drawn`` was drawn: ``[drawn]``, or a phrase played again."""
