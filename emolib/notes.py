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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from emolib.errors import EmolibError
from emolib.files import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pretty_midi

#: Columns of a note table, in order.
COLUMNS = ("pitch", "step", "duration", "start", "end", "velocity")
#: File suffixes treated as MIDI by the folder loaders.
MIDI_SUFFIXES = (".mid", ".midi")
#: The piano range: generated pitches stay within it.
PIANO_LOW, PIANO_HIGH = 21, 108


def _load_pretty_midi(source: str | os.PathLike | "pretty_midi.PrettyMIDI") -> tuple["pretty_midi.PrettyMIDI", str]:
    import pretty_midi

    if isinstance(source, pretty_midi.PrettyMIDI):
        return source, "<PrettyMIDI>"
    path = Path(source)
    if not path.is_file():
        raise EmolibError("MIDI file not found", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pretty_midi warns about odd meta events; not the user's problem
            return pretty_midi.PrettyMIDI(str(path)), str(path)
    except Exception as err:  # mido/pretty_midi raise many types for corrupt files
        raise EmolibError(f"cannot parse MIDI ({type(err).__name__}: {err})", path) from None


def midi_to_notes(source: str | os.PathLike | "pretty_midi.PrettyMIDI") -> "pd.DataFrame":
    """Read a MIDI file (or a PrettyMIDI) into a note table sorted by onset.

    Raises EmolibError naming the file when it cannot be parsed, holds only drums, or has no notes.
    """
    import pandas as pd

    pm, name = _load_pretty_midi(source)
    instruments = [inst for inst in pm.instruments if not inst.is_drum]
    if not instruments:
        why = "only drum tracks" if pm.instruments else "no instruments"
        raise EmolibError(f"no pitched notes ({why})", name)
    raw = [(n.pitch, n.start, n.end, n.velocity) for inst in instruments for n in inst.notes]
    if not raw:
        raise EmolibError("no notes", name)
    arr = np.array(raw, dtype=np.float64)
    order = np.lexsort((arr[:, 0], arr[:, 1]))  # by start, then pitch (chords low to high)
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


def notes_to_midi(notes: "pd.DataFrame | dict | np.ndarray", program: int = 0, velocity: int | Iterable[int] | None = None,
                  instrument_name: str = "Piano") -> "pretty_midi.PrettyMIDI":
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
    elif np.ndim(velocity) == 0:
        vel = np.full(len(pitch), int(velocity))
    else:
        vel = np.asarray(list(velocity), dtype=np.int64)
    vel = np.clip(vel, 1, 127)
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=int(program), name=instrument_name)
    for p, s, d, v in zip(pitch, start, duration, vel):
        inst.notes.append(pretty_midi.Note(velocity=int(v), pitch=int(np.clip(p, 0, 127)), start=float(s),
                                           end=float(s + d)))
    pm.instruments.append(inst)
    return pm


@dataclass
class FolderNotes:
    """Note tables loaded from a folder, and the files skipped with the reason."""

    tables: dict[str, "pd.DataFrame"] = field(default_factory=dict)
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


def load_folder(folder: str | os.PathLike, max_files: int | None = None, min_notes: int = 1,
                files: Iterable[str | os.PathLike] | None = None) -> FolderNotes:
    """Load every MIDI in ``folder`` (or the given ``files``), skipping and reporting bad ones.

    A file that cannot be parsed, has only drums, or fewer than ``min_notes`` notes lands in
    ``skipped`` with the reason instead of stopping the batch.
    """
    paths = [Path(f) for f in files] if files is not None else midi_files(folder)
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


def write_midi(midi: "pretty_midi.PrettyMIDI", path: str | os.PathLike) -> Path:
    """Write ``midi`` to ``path`` atomically (a crash never leaves a half-written file)."""
    with atomic_path(path) as tmp:
        midi.write(str(tmp))
    return Path(path)


def midi_bytes(midi: "pretty_midi.PrettyMIDI") -> bytes:
    """The standard-MIDI-file bytes of ``midi`` (for downloads and in-memory round trips)."""
    buf = io.BytesIO()
    midi.write(buf)
    return buf.getvalue()


def describe(midi: "pretty_midi.PrettyMIDI") -> dict:
    """Summary of a piece: number of notes, length in seconds, distinct pitches."""
    pitches = [n.pitch for inst in midi.instruments if not inst.is_drum for n in inst.notes]
    return {
        "notes": len(pitches),
        "seconds": round(float(midi.get_end_time()), 3),
        "distinct_pitches": len(set(pitches)),
    }
