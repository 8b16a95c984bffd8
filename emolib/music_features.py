"""Musical features of a MIDI piece: interpretable, tempo-free numbers (density, register, mode, dynamics, ...).

Used by the emotion judge (``emolib.judge``: a classifier over these features) and by steering
(``emolib.steer``: per-emotion medians of them). Generated pieces carry no meaningful tempo map,
so every time feature is in seconds, never in beats. Notes are read by ``emolib.notes`` (the one
MIDI reader).
"""
from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emolib import MUSIC_EMOTIONS
from emolib.errors import EmolibError
from emolib.notes import midi_files, midi_to_notes, song_id
from emolib.paths import data_root

if TYPE_CHECKING:  # pragma: no cover
    import pretty_midi

__all__ = ["FEATURE_VERSION", "KK_MAJOR", "KK_MINOR", "ONSET_TOLERANCE", "FEATURE_NAMES", "note_arrays",
           "key_correlations", "best_key", "features", "Clip", "list_clips", "feature_matrix"]

#: Bump when features() changes: cached feature tables are keyed by it.
FEATURE_VERSION = 2

#: Krumhansl-Kessler key profiles (probe-tone ratings), C major and C minor.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
_MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR_SCALE = np.array([0, 2, 3, 5, 7, 8, 10])
#: Interval classes heard as dissonant when sounded together (m2, M2, tritone, m7, M7).
_DISSONANT = {1, 2, 6, 10, 11}
#: Notes starting within this many seconds of each other count as one onset (a chord).
ONSET_TOLERANCE = 0.03

#: Names of the entries of features(), in order.
FEATURE_NAMES: tuple[str, ...] = (
    "note_density",        # notes per second
    "onset_density",       # distinct onsets (chords count once) per second
    "pitch_mean",
    "pitch_std",
    "pitch_low",           # 5th percentile
    "pitch_high",          # 95th percentile
    "pitch_range",         # 95th - 5th percentile
    "distinct_pitches",
    "major_corr",          # best Krumhansl major-key correlation
    "minor_corr",          # best Krumhansl minor-key correlation
    "mode_major",          # major_corr - minor_corr: > 0 leans major
    "key_clarity",         # max(major_corr, minor_corr)
    "off_key",             # share of note time outside the best key's scale
    "pc_entropy",          # pitch-class entropy (bits)
    "velocity_mean",
    "velocity_std",
    "duration_log_mean",   # log seconds
    "duration_log_std",
    "legato",              # mean duration / mean inter-onset interval
    "polyphony",           # mean notes sounding (sum of durations / span)
    "chord_size",          # mean notes per onset
    "ioi_log_mean",        # log seconds between distinct onsets
    "ioi_log_std",
    "melodic_step",        # mean |interval| of the top line, semitones
    "dissonance",          # share of dissonant interval classes within chords
    "low_share",           # share of notes below C3 (48)
    "high_share",          # share of notes above C5 (72)
)


# --------------------------------------------------------------------------- features
def note_arrays(source: str | os.PathLike | pretty_midi.PrettyMIDI) -> dict[str, np.ndarray]:
    """All non-drum notes as float arrays ``start, end, pitch, velocity`` sorted by onset then pitch.

    Read by ``notes.midi_to_notes`` (EmolibError naming the file when unreadable or without notes);
    every note lasts at least a millisecond (log durations stay finite).
    """
    table = midi_to_notes(source)
    start = table["start"].to_numpy(dtype=np.float64)
    return {"start": start, "end": np.maximum(table["end"].to_numpy(dtype=np.float64), start + 1e-3),
            "pitch": table["pitch"].to_numpy(dtype=np.float64),
            "velocity": table["velocity"].to_numpy(dtype=np.float64)}


def key_correlations(pc_profile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of a 12-bin pitch-class profile with the 12 major and 12 minor keys."""
    prof = np.asarray(pc_profile, dtype=np.float64)
    if prof.std() == 0:
        return np.zeros(12), np.zeros(12)
    maj = np.array([np.corrcoef(prof, np.roll(KK_MAJOR, k))[0, 1] for k in range(12)])
    mnr = np.array([np.corrcoef(prof, np.roll(KK_MINOR, k))[0, 1] for k in range(12)])
    return maj, mnr


def best_key(pc_profile: np.ndarray) -> tuple[int, str, float]:
    """The Krumhansl-Schmuckler key estimate: (tonic pitch class, "major"/"minor", correlation)."""
    maj, mnr = key_correlations(pc_profile)
    if maj.max() >= mnr.max():
        return int(maj.argmax()), "major", float(maj.max())
    return int(mnr.argmax()), "minor", float(mnr.max())



def _onset_groups(start: np.ndarray) -> np.ndarray:
    """Group index of each note: notes within ONSET_TOLERANCE of the group's first note form one onset (chord)."""
    count = len(start)
    new_group = np.empty(count, dtype=bool)
    new_group[0] = True
    group_start = start[0]
    for i in range(1, count):
        if start[i] - group_start > ONSET_TOLERANCE:
            new_group[i] = True
            group_start = start[i]
        else:
            new_group[i] = False
    return np.cumsum(new_group) - 1


def _chord_dissonance(pitch: np.ndarray, group: np.ndarray) -> float:
    """Share of dissonant interval classes among the pairs of notes sounded together (0 without chords)."""
    sizes = np.bincount(group)
    diss_num = diss_den = 0
    for g in np.flatnonzero(sizes > 1):
        ps = np.unique(pitch[group == g].astype(int))
        if len(ps) < 2:
            continue
        iv = (ps[None, :] - ps[:, None])[np.triu_indices(len(ps), 1)] % 12
        diss_num += sum(int(v) in _DISSONANT for v in iv)
        diss_den += len(iv)
    return diss_num / diss_den if diss_den else 0.0


def _tonal(pitch: np.ndarray, dur: np.ndarray) -> dict[str, float]:
    """Key, mode and pitch-class features from the duration-weighted pitch-class profile."""
    pc = np.bincount(pitch.astype(int) % 12, weights=dur, minlength=12)
    maj, mnr = key_correlations(pc)
    tonic, mode, _ = best_key(pc)
    scale = (tonic + (_MAJOR_SCALE if mode == "major" else _MINOR_SCALE)) % 12
    p = pc / max(pc.sum(), 1e-9)
    return {
        "major_corr": maj.max(),
        "minor_corr": mnr.max(),
        "mode_major": maj.max() - mnr.max(),
        "key_clarity": max(maj.max(), mnr.max()),
        "off_key": 1.0 - pc[scale].sum() / max(pc.sum(), 1e-9),
        "pc_entropy": float(-(p[p > 0] * np.log2(p[p > 0])).sum()),
    }


def features(source: str | os.PathLike | pretty_midi.PrettyMIDI) -> np.ndarray:
    """The musical feature vector of a piece (order: FEATURE_NAMES). Tempo-free: times in seconds."""
    n = note_arrays(source)
    start, end, pitch, vel = n["start"], n["end"], n["pitch"], n["velocity"]
    dur = end - start
    span = max(float(end.max() - start.min()), 1.0)
    count = len(pitch)
    group = _onset_groups(start)
    onsets = start[np.r_[True, np.diff(group) > 0]]
    n_onsets = len(onsets)
    ioi = np.diff(onsets)
    ioi = ioi[ioi > 0]
    log_ioi = np.log(ioi) if len(ioi) else np.array([np.log(span)])
    top = np.full(n_onsets, -np.inf)  # the top line: the highest pitch of each onset
    np.maximum.at(top, group, pitch)
    steps = np.abs(np.diff(top))
    log_dur = np.log(dur)
    mean_ioi = float(np.mean(ioi)) if len(ioi) else span
    vals = {
        "note_density": count / span,
        "onset_density": n_onsets / span,
        "pitch_mean": pitch.mean(),
        "pitch_std": pitch.std(),
        "pitch_low": np.percentile(pitch, 5),
        "pitch_high": np.percentile(pitch, 95),
        "pitch_range": np.percentile(pitch, 95) - np.percentile(pitch, 5),
        "distinct_pitches": len(np.unique(pitch)),
        **_tonal(pitch, dur),
        "velocity_mean": vel.mean(),
        "velocity_std": vel.std(),
        "duration_log_mean": log_dur.mean(),
        "duration_log_std": log_dur.std(),
        "legato": float(np.mean(dur)) / max(mean_ioi, 1e-3),
        "polyphony": dur.sum() / span,
        "chord_size": count / n_onsets,
        "ioi_log_mean": log_ioi.mean(),
        "ioi_log_std": log_ioi.std(),
        "melodic_step": steps.mean() if len(steps) else 0.0,
        "dissonance": _chord_dissonance(pitch, group),
        "low_share": float(np.mean(pitch < 48)),
        "high_share": float(np.mean(pitch > 72)),
    }
    return np.array([float(vals[k]) for k in FEATURE_NAMES], dtype=np.float64)


# --------------------------------------------------------------------------- labelled data
@dataclass(frozen=True)
class Clip:
    """One labelled MIDI file of the training data."""

    path: Path
    emotion: str
    song: str  #: notes.song_id of the file



def list_clips(midi_dir: str | os.PathLike | None = None, emotions: Sequence[str] = MUSIC_EMOTIONS) -> list[Clip]:
    """The labelled MIDI files ``midi_dir/<emotion>/*.mid`` (default: the data root's music/midi)."""
    root = Path(midi_dir) if midi_dir is not None else data_root() / "music" / "midi"
    if not root.is_dir():
        raise EmolibError("MIDI folder not found (expected <emotion>/*.mid inside)", root)
    clips = [Clip(p, e, song_id(p)) for e in emotions if (root / e).is_dir() for p in midi_files(root / e)]
    if not clips:
        raise EmolibError(f"no MIDI files in any of {', '.join(e + '/' for e in emotions)}", root)
    return clips


def _cache_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{FEATURE_VERSION}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()


def feature_matrix(paths: Iterable[str | os.PathLike], cache_dir: str | os.PathLike | None = None,
                   progress: bool = False) -> tuple[np.ndarray, list[int], list[str]]:
    """Features of many files: (matrix of the readable ones, their indices, one error line per bad file).

    A bad file is reported and skipped, never fatal. With ``cache_dir``, each file's features are
    stored there (keyed by path, size, mtime and FEATURE_VERSION) so reruns skip parsing.
    """
    paths = [Path(p) for p in paths]
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    rows, ok, errors = [], [], []
    iterator: Iterable = enumerate(paths)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, total=len(paths), desc="features", file=sys.stderr)
    for i, path in iterator:
        cached = cache / f"{_cache_key(path)}.npy" if cache is not None and path.is_file() else None
        try:
            if cached is not None and cached.is_file():
                vec = np.load(cached)
            else:
                vec = features(path)
                if cached is not None:
                    np.save(cached, vec)
        except EmolibError as err:
            errors.append(str(err))
            continue
        rows.append(vec)
        ok.append(i)
    matrix = np.vstack(rows) if rows else np.zeros((0, len(FEATURE_NAMES)))
    return matrix, ok, errors
