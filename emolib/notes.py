"""MIDI <-> note tables: the representation the melody LSTMs learn from and generate.

A note table is a ``pandas.DataFrame`` with one row per note, sorted by onset, columns
``pitch`` (MIDI number), ``step`` (seconds since the previous note's onset; 0 for the first),
``duration`` (seconds), ``start``, ``end`` (seconds) and ``velocity`` (1-127). All non-drum
instruments of a file are merged into one stream, as the TensorFlow "Generate music with an
RNN" tutorial does.
"""
from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from emolib.errors import EmolibError
from emolib.files import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pretty_midi

__all__ = ["COLUMNS", "MIDI_SUFFIXES", "PIANO_LOW", "PIANO_HIGH", "RESTRIKE_MIN", "load_midi", "midi_to_notes",
           "notes_to_midi", "restrike", "FolderNotes", "midi_files", "load_folder", "write_midi", "midi_bytes",
           "describe", "TOKEN_FIELDS", "STEP_EDGES", "DURATION_EDGES", "BIN_RANGE", "VELOCITY_BIN", "VOCAB",
           "STEP_VALUES", "DURATION_VALUES", "VELOCITY_VALUES", "tokenize", "chords_top_first", "detokenize",
           "song_id", "SPLIT_FRACTIONS", "split_songs", "KEY_PROFILES", "key_shift", "in_key_frame", "to_random_key"]

#: Columns of a note table, in order.
COLUMNS = ("pitch", "step", "duration", "start", "end", "velocity")
#: File suffixes treated as MIDI by the folder loaders.
MIDI_SUFFIXES = (".mid", ".midi")
#: The piano range: generated pitches stay within it.
PIANO_LOW, PIANO_HIGH = 21, 108
#: Two onsets of one key closer than this (seconds) are one stroke: a piano key cannot be re-struck faster.
RESTRIKE_MIN = 0.03


def load_midi(source: str | os.PathLike | pretty_midi.PrettyMIDI) -> pretty_midi.PrettyMIDI:
    """A PrettyMIDI from a path (or the object itself): emolib's one MIDI reader.

    Raises EmolibError naming the file when it is missing or cannot be parsed.
    """
    import pretty_midi

    if isinstance(source, pretty_midi.PrettyMIDI):
        return source
    path = Path(source)
    if not path.is_file():
        raise EmolibError("MIDI file not found", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pretty_midi warns about odd meta events; not the user's problem
            return pretty_midi.PrettyMIDI(str(path))
    except Exception as err:  # mido/pretty_midi raise many types for corrupt files
        raise EmolibError(f"cannot parse MIDI ({type(err).__name__}: {err})", path) from None


def midi_to_notes(source: str | os.PathLike | pretty_midi.PrettyMIDI) -> pd.DataFrame:
    """Read a MIDI file (or a PrettyMIDI) into a note table sorted by onset.

    Raises EmolibError naming the file when it cannot be parsed, holds only drums, or has no notes.
    """
    import pandas as pd

    pm = load_midi(source)
    name = "<PrettyMIDI>" if pm is source else str(source)
    instruments = [inst for inst in pm.instruments if not inst.is_drum]
    if not instruments:
        why = "only drum tracks" if pm.instruments else "no instruments"
        raise EmolibError(f"no pitched notes ({why})", name)
    raw = [(n.pitch, n.start, n.end, n.velocity) for inst in instruments for n in inst.notes]
    if not raw:
        raise EmolibError("no notes", name)
    arr = np.array(raw, dtype=np.float64)
    order = np.lexsort((arr[:, 0], arr[:, 1]))  # by start, then pitch (exact ties low to high)
    arr = arr[order]
    start, end = arr[:, 1], arr[:, 2]
    step = np.diff(start, prepend=start[0])
    return pd.DataFrame({
        "pitch": arr[:, 0].astype(np.int64),
        "step": step,
        "duration": np.maximum(end - start, 0.0),
        "start": start,
        "end": end,
        "velocity": arr[:, 3].astype(np.int64),
    }, columns=list(COLUMNS))


def notes_to_midi(notes: pd.DataFrame | dict | np.ndarray, program: int = 0,
                  velocity: int | Iterable[int] | None = None,
                  instrument_name: str = "Piano") -> pretty_midi.PrettyMIDI:
    """Build a one-instrument PrettyMIDI from a note table.

    ``notes`` needs ``pitch`` and ``duration`` and either ``start`` or ``step`` (onsets are the
    cumulative sum of steps). Velocities come from ``velocity`` (an int, a sequence, or None to
    use the table's ``velocity`` column, else 80). ``program`` is the General MIDI program (0 piano).
    """
    import pretty_midi

    if isinstance(notes, np.ndarray):
        raise TypeError("notes must be a DataFrame or a dict of columns")
    pitch = np.asarray(notes["pitch"], dtype=np.int64)
    duration = np.asarray(notes["duration"], dtype=np.float64)
    if "start" in notes:
        start = np.asarray(notes["start"], dtype=np.float64)
    else:
        start = np.cumsum(np.asarray(notes["step"], dtype=np.float64))
    if velocity is None:
        vel = np.asarray(notes["velocity"], dtype=np.int64) if "velocity" in notes else np.full(len(pitch), 80)
    elif isinstance(velocity, Iterable) and np.ndim(np.asarray(velocity, dtype=object)) > 0:
        vel = np.asarray(list(velocity), dtype=np.int64)
    else:
        vel = np.full(len(pitch), int(cast(int, velocity)))
    vel = np.clip(vel, 1, 127)
    pitch = np.clip(pitch, 0, 127)
    keep, end = restrike(pitch, start, start + duration)
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=int(program), name=instrument_name)
    for p, s, e, v in zip(pitch[keep], start[keep], end[keep], vel[keep]):
        inst.notes.append(pretty_midi.Note(velocity=int(v), pitch=int(p), start=float(s), end=float(e)))
    pm.instruments.append(inst)
    return pm


def restrike(pitch: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the notes to keep, in their order; every note's end) after a piano's rule: a key
    struck again ends its previous sound, and a key struck twice at once (within RESTRIKE_MIN) sounds
    once, as long as the longer of the two.

    A MIDI file cannot hold two overlapping notes of one pitch on one channel: each note-off ends
    whichever note a reader pairs it with. Applying the rule before writing makes the file say
    exactly what was meant, so a piece reads back as it was generated.
    """
    pitch, start, end = np.asarray(pitch), np.asarray(start, np.float64), np.asarray(end, np.float64).copy()
    keep: list[int] = []
    for i in np.lexsort((start - end, start, pitch)):          # by key, then onset
        j = keep[-1] if keep else -1
        if j >= 0 and pitch[j] == pitch[i]:
            if start[i] - start[j] < RESTRIKE_MIN - 1e-9:  # exactly 30 ms apart: two strokes
                end[j] = max(end[j], end[i])
                continue
            end[j] = min(end[j], start[i])
        keep.append(int(i))
    return np.sort(np.array(keep, dtype=np.int64)), end


@dataclass
class FolderNotes:
    """Note tables loaded from a folder, and the files skipped with the reason."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def n_notes(self) -> int:
        """Total notes over all loaded files."""
        return int(sum(len(t) for t in self.tables.values()))


def midi_files(folder: str | os.PathLike) -> list[Path]:
    """The MIDI files directly in ``folder``, sorted by name; EmolibError if the folder is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EmolibError("MIDI folder not found", folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)


def load_folder(folder: str | os.PathLike | None, max_files: int | None = None, min_notes: int = 1,
                files: Iterable[str | os.PathLike] | None = None) -> FolderNotes:
    """Load every MIDI in ``folder`` (or the given ``files``), skipping and reporting bad ones.

    A file that cannot be parsed, has only drums, or fewer than ``min_notes`` notes lands in
    ``skipped`` with the reason instead of stopping the batch.
    """
    if files is not None:
        paths = [Path(f) for f in files]
    elif folder is not None:
        paths = midi_files(folder)
    else:
        raise TypeError("load_folder needs a folder or files")
    if max_files is not None:
        paths = paths[:max_files]
    out = FolderNotes()
    for path in paths:
        try:
            table = midi_to_notes(path)
        except EmolibError as err:
            out.skipped[str(path)] = str(err)
            continue
        if len(table) < min_notes:
            out.skipped[str(path)] = f"{path}: only {len(table)} notes (need {min_notes})"
            continue
        out.tables[str(path)] = table
    return out


def write_midi(midi: pretty_midi.PrettyMIDI, path: str | os.PathLike) -> Path:
    """Write ``midi`` to ``path`` atomically (a crash never leaves a half-written file)."""
    with atomic_path(path) as tmp:
        midi.write(str(tmp))
    return Path(path)


def midi_bytes(midi: pretty_midi.PrettyMIDI) -> bytes:
    """The standard-MIDI-file bytes of ``midi`` (for downloads and in-memory round trips)."""
    buf = io.BytesIO()
    midi.write(buf)
    return buf.getvalue()


def describe(midi: pretty_midi.PrettyMIDI) -> dict:
    """Summary of a piece: number of notes, length in seconds, distinct pitches."""
    pitches = [n.pitch for inst in midi.instruments if not inst.is_drum for n in inst.notes]
    return {
        "notes": len(pitches),
        "seconds": round(float(midi.get_end_time()), 3),
        "distinct_pitches": len(set(pitches)),
    }


# =========================================================================== note tokens
#: The four parts of a note token, in the order the melody models predict them: when the next
#: note starts, then its pitch (given when), then how long and how loud it is.
TOKEN_FIELDS = ("step", "pitch", "duration", "velocity")
#: Upper bin edges for step (s): bin 0 is "with the previous note" (a chord, < 12 ms apart), then
#: 47 bins about 10% wide up to 2 s; longer rests fall in the last bin.
STEP_EDGES = np.concatenate([[0.012], np.geomspace(0.02, 2.0, 47)])
#: Upper bin edges for duration (s): 48 bins about 10% wide from 0.05 s to 4 s (shorter and longer
#: notes fall in the first and last bin).
DURATION_EDGES = np.geomspace(0.05, 4.0, 48)
#: Velocity bins are 8 wide: 16 bins cover 0-127.
VELOCITY_BIN = 8
#: Vocabulary size of each token part.
VOCAB = {"step": len(STEP_EDGES) + 1, "pitch": 128, "duration": len(DURATION_EDGES) + 1,
         "velocity": 128 // VELOCITY_BIN}


def _centres(edges: np.ndarray, first: float) -> np.ndarray:
    """The value each bin decodes to: the geometric middle of its edges; the first bin decodes to
    ``first``, the last (open-ended) bin to the last edge."""
    inner = np.sqrt(edges[:-1] * edges[1:])
    return np.concatenate([[first], inner, [edges[-1]]])


#: Decoded value of every step / duration bin (seconds) and velocity bin.
STEP_VALUES = _centres(STEP_EDGES, 0.0)
DURATION_VALUES = _centres(DURATION_EDGES, DURATION_EDGES[0] ** 1.5 / DURATION_EDGES[1] ** 0.5)
VELOCITY_VALUES = np.arange(VOCAB["velocity"]) * VELOCITY_BIN + VELOCITY_BIN // 2
#: (lowest, highest) value each step / duration bin decodes to when drawn within it (``detokenize``
#: with an rng): the first bin from 0 (steps) or half its edge (durations); the open last bin, its edge.
BIN_RANGE = {part: (np.r_[first, edges], np.r_[edges, edges[-1]])
             for part, edges, first in (("step", STEP_EDGES, 0.0), ("duration", DURATION_EDGES, DURATION_EDGES[0] / 2))}


def tokenize(notes: pd.DataFrame | dict, transpose: int = 0, tempo: float = 1.0, top_first: bool = False
             ) -> np.ndarray:
    """Note table -> (N, 4) int32 tokens (``TOKEN_FIELDS`` order): binned step, pitch, binned
    duration, binned velocity.

    ``transpose`` shifts pitches by semitones and ``tempo`` divides times (1.1 = 10% faster): the
    augmentations used in training. Pitches are kept within 0-127. ``top_first`` lists each chord
    high to low (``chords_top_first``).
    """
    step = np.asarray(notes["step"], np.float64) / tempo
    duration = np.asarray(notes["duration"], np.float64) / tempo
    pitch = np.clip(np.asarray(notes["pitch"], np.int64) + int(transpose), 0, 127)
    velocity = np.clip(np.asarray(notes["velocity"], np.int64), 0, 127) // VELOCITY_BIN
    tokens = np.stack([np.searchsorted(STEP_EDGES, step, side="right"), pitch,
                       np.searchsorted(DURATION_EDGES, duration, side="right"), velocity], axis=1).astype(np.int32)
    return chords_top_first(tokens) if top_first else tokens


def chords_top_first(tokens: np.ndarray) -> np.ndarray:
    """Tokens with each chord (a note and the step-0 notes after it) listed highest pitch first.

    A chord's top note is usually its melody note; listed first, it is drawn before the
    accompaniment under it, so a model can choose it knowing it is the top. The chord keeps its
    place and its step; only the order of its notes changes.
    """
    tokens = np.asarray(tokens, np.int32)
    if len(tokens) == 0:
        return tokens
    chord = np.cumsum(tokens[:, 0] != 0)
    out = tokens[np.lexsort((-tokens[:, 1], chord))]
    out[:, 0] = tokens[:, 0]
    return out


def detokenize(tokens: np.ndarray, start: float = 0.0, rng: np.random.Generator | None = None) -> pd.DataFrame:
    """(N, 4) tokens -> note table; the first note starts at ``start`` plus its own step.

    Without ``rng`` every part decodes to its bin's value (``tokenize`` gives the tokens back).
    With ``rng``, times and velocities are drawn within their bins (log-uniform for times), as a
    player's are: decoded pieces are not locked to 49 durations and 16 loudnesses.
    """
    import pandas as pd

    tokens = np.asarray(tokens, np.int64).reshape(-1, 4)
    if rng is None:
        step, duration = STEP_VALUES[tokens[:, 0]], DURATION_VALUES[tokens[:, 2]]
        velocity = VELOCITY_VALUES[tokens[:, 3]]
    else:
        step, duration = _within(tokens[:, 0], "step", rng), _within(tokens[:, 2], "duration", rng)
        velocity = np.clip(tokens[:, 3] * VELOCITY_BIN + rng.integers(0, VELOCITY_BIN, len(tokens)), 1, 127)
    onset = start + np.cumsum(step)
    return pd.DataFrame({"pitch": tokens[:, 1], "step": step, "duration": duration, "start": onset,
                         "end": onset + duration, "velocity": velocity}, columns=list(COLUMNS))


def _within(bins: np.ndarray, part: str, rng: np.random.Generator) -> np.ndarray:
    """A value drawn inside each bin of ``part`` (``BIN_RANGE``): uniform in the first bin,
    log-uniform in the inner ones, the last edge for the open-ended last bin."""
    lo, hi = (r[bins] for r in BIN_RANGE[part])
    u = rng.random(len(bins))
    inner = (bins > 0) & (bins < len(BIN_RANGE[part][0]) - 1)
    return np.where(inner, lo * (np.maximum(hi, 1e-9) / np.maximum(lo, 1e-9)) ** u, lo + (hi - lo) * u)


# =========================================================================== songs
#: Krumhansl-Kessler key profiles, major and minor, tonic first: how strongly each pitch class belongs to a key.
KEY_PROFILES = np.array([[6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88],
                         [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17]])


def key_shift(notes: pd.DataFrame | dict) -> int:
    """Semitones (-5..+6) that move a note table's key to C major or A minor, the one key frame a
    ``melody.ModelConfig.key_frame`` model learns and plays in. The key is the Krumhansl-Kessler
    profile that best fits the duration-weighted pitch classes (0 when nothing sounds)."""
    pitch = np.asarray(notes["pitch"], np.int64)
    pc = np.bincount(pitch % 12, weights=np.asarray(notes["duration"], np.float64), minlength=12)
    if pc.std() == 0:
        return 0
    best, shift = -2.0, 0
    for tonic in range(12):
        for profile, to_major in zip(KEY_PROFILES, (0, 3)):  # a minor key's relative major is 3 semitones up
            fit = np.corrcoef(pc, np.roll(profile, tonic))[0, 1]
            if fit > best:
                best, shift = fit, -(tonic + to_major) % 12
    return shift - 12 if shift > 6 else shift


def in_key_frame(notes: pd.DataFrame) -> pd.DataFrame:
    """The table moved to C major / A minor (``key_shift``); pitches kept within 0-127."""
    return notes.assign(pitch=np.clip(notes["pitch"].to_numpy() + key_shift(notes), 0, 127))


def to_random_key(notes: pd.DataFrame, seed: int | None = None) -> pd.DataFrame:
    """A piece played in the key frame moved to a key -5..+6 semitones away, drawn from ``seed``
    among the shifts that keep every note on the piano (none fits: unmoved)."""
    pitch = notes["pitch"].to_numpy()
    shifts = [s for s in range(-5, 7) if pitch.min() + s >= PIANO_LOW and pitch.max() + s <= PIANO_HIGH] \
        if len(pitch) else []
    rng = np.random.default_rng(None if seed is None else [seed, 2])
    return notes.assign(pitch=pitch + (int(rng.choice(shifts)) if shifts else 0))


def song_id(path: str | os.PathLike) -> str:
    """The song a clip belongs to, so clips of one song never straddle a data split.

    EMOPIA clips ``emopia_Q<q>_<songid>_<n>.mid`` share ``<songid>``; other files (VGMIDI
    phrases ``<piece>_<n>.mid``, POP909 songs) group by their name without a trailing ``_<n>``.
    """
    stem = Path(path).stem
    m = re.fullmatch(r"emopia_Q\d_(.+)_\d+", stem)
    if m:
        return "emopia:" + m.group(1)
    return re.sub(r"_\d+$", "", stem) if not stem.startswith("pop909_") else stem


#: Share of the songs held out for validation and for the final test, per emotion.
SPLIT_FRACTIONS = {"val": 0.10, "test": 0.15}


def split_songs(files: Iterable[str | os.PathLike], seed: int = 0,
                fractions: dict[str, float] | None = None) -> dict[str, list[str]]:
    """Split files into ``train``, ``val`` and ``test`` by song (every clip of a song on one side).

    Seeded and stable: the same files and seed give the same split. Each held-out part gets at
    least one song when there are three or more songs.
    """
    fractions = dict(SPLIT_FRACTIONS if fractions is None else fractions)
    files = sorted(str(f) for f in files)
    songs = sorted({song_id(f) for f in files})
    np.random.default_rng(seed).shuffle(songs)
    side: dict[str, str] = {}
    at = 0
    for part, share in fractions.items():
        n = int(round(len(songs) * share))
        if share > 0 and len(songs) >= len(fractions) + 1:
            n = max(n, 1)
        for s in songs[at:at + n]:
            side[s] = part
        at += n
    out: dict[str, list[str]] = {"train": [], **{part: [] for part in fractions}}
    for f in files:
        out[side.get(song_id(f), "train")].append(f)
    return out
