"""The rules every generated piece keeps, whatever the sampling (``melody.MelodyGenerator.generate_tokens``).

A note LSTM drawing note by note can get stuck: on one pitch, on an octave, on a few pitches, or too
slow to fill its time. ``masks`` puts -inf on the values of each part of the next note that would
break a rule, so a piece stays valid, and a piece that never comes near a rule is unchanged.
``Keys`` follows which piano keys are surely still down: what an LSTM with the held-key input
(``melody.ModelConfig.held_input``) is told, in training (``down_before``) and while drawing, and
what the rule (``HELD_KEYS``, off) that a held key is not struck again reads.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from emolib.notes import BIN_RANGE, RESTRIKE_MIN, STEP_EDGES, TOKEN_FIELDS, VOCAB

__all__ = ["MIN_NOTES_PER_SECOND", "MAX_REPEATS", "MIN_PITCHES", "HELD_KEYS", "Keys", "masks", "allowed",
           "held_pitches", "down_at", "down_before", "STEP_HIGH"]

#: At least MIN_NOTES_PER_SECOND (the longest steps masked while behind), at most MAX_REPEATS notes in a
#: row on one pitch and twice that on two (an LSTM can get stuck on a bass note or an octave tremolo),
#: and from half way MIN_PITCHES pitches (one per 5 s if fewer).
MIN_NOTES_PER_SECOND, MAX_REPEATS, MIN_PITCHES = 1.5, 8, 8
#: No key struck again while it is surely still down (a piano cannot; the LSTM cannot see what still
#: sounds). Off: it costs fidelity (models/melody/README.md, "Plausible values only, and keys still held").
HELD_KEYS = False
_STEP_UPPER = np.r_[STEP_EDGES, np.inf]  # for the pace guard, the last step bin is unbounded
#: Per step token, the latest its onset can decode to (what "surely still down" is measured against).
STEP_HIGH = BIN_RANGE["step"][1]
_DURATION_LOW = BIN_RANGE["duration"][0]


class Keys:
    """Which piano keys are surely still down. Time runs on a clock at the latest each onset can
    decode to, and each note lasts the shortest its duration can decode to, so "down" is certain."""

    def __init__(self) -> None:
        self.clock = 0.0
        self._until = np.full(VOCAB["pitch"], -np.inf)  # on the clock, until when each key is surely down
        self._struck = np.full(VOCAB["pitch"], -np.inf)  # on the clock, when each key was last struck

    def held(self) -> np.ndarray:
        """Per pitch, how long after the last onset its key is surely still down (<= 0: released)."""
        return self._until - self.clock

    def strike(self, token: Sequence[int] | np.ndarray, first: bool = False) -> bool:
        """Play ``token`` (its step moves the clock, except for a piece's first note); whether its key
        was surely still down. As written (``notes.restrike``), a key struck again ends its previous
        sound, unless struck twice at once."""
        if not first:
            self.clock += float(STEP_HIGH[token[0]])
        pitch, end = int(token[1]), self.clock + float(_DURATION_LOW[token[2]])
        down = bool(self._until[pitch] > self.clock)
        together = self.clock - self._struck[pitch] < RESTRIKE_MIN
        self._until[pitch] = max(self._until[pitch], end) if together else end
        self._struck[pitch] = self.clock
        return down


def down_at(held: np.ndarray, step: int) -> np.ndarray:
    """Per key, whether it is surely still down at an onset ``step`` (a step token) after the last one
    (``held``: ``Keys.held()``)."""
    return held > STEP_HIGH[step]


def down_before(played: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per note t of ``played``, the keys (N, 128) surely still down ``steps[t]`` (the next note's step
    token) after its onset, from notes 0..t: what a model with the held-key input is told about the
    next note. A step below 0 (padding) ends the sequence; the rows after it stay 0."""
    out = np.zeros((len(played), VOCAB["pitch"]), np.float32)
    keys = Keys()
    for t, (token, step) in enumerate(zip(played, steps)):
        if step < 0:
            break
        keys.strike(token, first=t == 0)
        out[t] = down_at(keys.held(), int(step))
    return out


def masks(tokens: Sequence[np.ndarray], time: float, seconds: float) -> dict[str, np.ndarray] | None:
    """Per part, -inf for the values the rules do not allow now (None: every value is allowed)."""
    out: dict[str, np.ndarray] = {}
    n, need = len(tokens), MIN_NOTES_PER_SECOND * seconds * 1.05 + 2  # margin: times are drawn within bins
    few = min(MIN_PITCHES, int(seconds // 5))  # 8 pitches in 40 s; a 6 s section of a blend needs only 1
    if n < need * time / seconds:
        out["step"] = np.where(max((seconds - time) / (need - n), STEP_EDGES[1]) >= _STEP_UPPER, 0.0, -np.inf)
    recent = [int(t[1]) for t in tokens[-2 * MAX_REPEATS:]]  # stuck on one pitch, or looping on two
    banned = {recent[-1]} if n >= MAX_REPEATS and len(set(recent[-MAX_REPEATS:])) == 1 else set()
    banned = set(recent) if n >= 2 * MAX_REPEATS and len(set(recent)) <= 2 else banned
    if time >= seconds / 2 and len({int(t[1]) for t in tokens[-64:]}) < few:  # the recent notes first: cheap
        used = {int(t[1]) for t in tokens}
        banned |= used if len(used) < few else set()
    if banned:
        out["pitch"] = np.zeros(VOCAB["pitch"])
        out["pitch"][sorted(banned)] = -np.inf
    return out or None


def held_pitches(held: np.ndarray, step: int) -> np.ndarray:
    """-inf for the pitches whose keys are surely still down at an onset ``step`` (a step token)
    after the last one (``held``: ``Keys.held()``), 0 for the others."""
    return np.where(down_at(held, step), -np.inf, 0.0)


def allowed(token: np.ndarray, guard: Mapping[str, np.ndarray] | None, held: np.ndarray | None = None) -> bool:
    """Whether the ``masks`` allow ``token`` and, given ``held`` (``Keys.held()``), its key is not surely down."""
    return ((not guard or all(np.isfinite(guard[f][token[i]]) for i, f in enumerate(TOKEN_FIELDS) if f in guard))
            and (held is None or not down_at(held[token[1]], token[0])))
