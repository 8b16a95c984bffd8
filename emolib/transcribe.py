"""Audio -> MIDI with basic-pitch (its ONNX model): one file, or a whole emotion-labelled folder tree.

A folder tree ``IN/<emotion>/**/*.mp3`` becomes ``OUT/<emotion>/**/*.mid``. The batch is
resumable (an output newer than its input is skipped unless ``force``), runs in parallel worker
processes that each load the model once, writes every MIDI atomically, and never stops at a bad
file: corrupt, truncated, empty, silent, unsupported or unreadable inputs are reported with their
reason (per-file results, the summary and a JSON report) while every good file is still written.

The MIDI is one piano instrument (program 0) with notes sorted by start time, ready for
``emolib.notes``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from emolib.audio import AUDIO_SUFFIXES, UNSUPPORTED_AUDIO_SUFFIXES, audio_duration, load_audio
from emolib.batch import cpu_count, run_pool
from emolib.errors import EmolibError

__all__ = ["REPORT_NAME", "MODEL_SAMPLE_RATE", "SILENCE_PEAK", "Settings", "load_basic_pitch", "transcribe_audio",
           "transcribe", "transcribe_file", "find_audio", "output_path", "transcribe_tree"]

#: Default report file name inside OUT_DIR.
REPORT_NAME = "transcribe_report.json"
#: Sample rate basic-pitch's model expects.
MODEL_SAMPLE_RATE = 22050
#: A signal whose peak is below this is treated as silence.
SILENCE_PEAK = 1e-4

# basic-pitch's model windows: 2 s of audio each, overlapping by 30 model frames.
_FFT_HOP = 256
_WINDOW_SAMPLES = MODEL_SAMPLE_RATE * 2 - _FFT_HOP
_OVERLAP_FRAMES = 30
_OVERLAP_SAMPLES = _OVERLAP_FRAMES * _FFT_HOP
_HOP_SAMPLES = _WINDOW_SAMPLES - _OVERLAP_SAMPLES
_ONNX_OUTPUTS = {"note": "StatefulPartitionedCall:1", "onset": "StatefulPartitionedCall:2",
                 "contour": "StatefulPartitionedCall:0"}
_ONNX_INPUT = "serving_default_input_2:0"
# atomic_path's temporary names: ".<stem>.<8 random chars>.mid"
_TEMP_MIDI = re.compile(r"^\..+\.[a-z0-9_]{8}\.mid$")


@dataclasses.dataclass(frozen=True)
class Settings:
    """basic-pitch's note-decoding parameters (its own defaults).

    ``onset_threshold``: how confident an onset must be to start a note (higher: fewer notes);
    ``frame_threshold``: how confident a frame must be to continue one; ``min_note_ms``: shorter
    notes are dropped; ``min_freq``/``max_freq`` (Hz, None = no limit) restrict the pitch range;
    ``melodia_trick`` recovers notes without a clear onset.
    """

    onset_threshold: float = dataclasses.field(default=0.5, metadata={
        "help": "note onset confidence, 0-1 (basic-pitch default 0.5; higher: fewer notes)"})
    frame_threshold: float = dataclasses.field(default=0.3, metadata={
        "help": "note frame confidence, 0-1 (basic-pitch default 0.3; higher: shorter notes)"})
    min_note_ms: float = dataclasses.field(default=127.70, metadata={"help": "drop shorter notes (default 127.7 ms)"})
    min_freq: float | None = dataclasses.field(default=None, metadata={
        "help": "lowest pitch kept, Hz (default: no limit)", "cli": {"type": float}})
    max_freq: float | None = dataclasses.field(default=None, metadata={
        "help": "highest pitch kept, Hz (default: no limit)", "cli": {"type": float}})
    melodia_trick: bool = dataclasses.field(default=True, metadata={
        "help": "recover notes without a clear onset (basic-pitch default: on)"})
    midi_tempo: float = dataclasses.field(default=120.0, metadata={"help": "tempo written into the MIDI files"})

    def __post_init__(self) -> None:
        for name in ("onset_threshold", "frame_threshold"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise EmolibError(f"{name} must be between 0 and 1 (exclusive), got {value}")
        if self.min_note_ms < 0:
            raise EmolibError(f"min_note_ms must be >= 0, got {self.min_note_ms}")
        if self.min_freq is not None and self.max_freq is not None and self.min_freq >= self.max_freq:
            raise EmolibError(f"min_freq ({self.min_freq} Hz) must be below max_freq ({self.max_freq} Hz)")


# --------------------------------------------------------------------------- model
@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    """Import basic-pitch without its coremltools/tflite/TensorFlow warnings and without TensorFlow.

    basic-pitch probes TensorFlow, coremltools and tflite on import and logs a warning for each
    missing one; we only use its ONNX model, so the probes are answered "absent" (unless already
    imported by the caller) and the log lines are swallowed. Importing TensorFlow later still works.
    """
    blocked = [name for name in ("tensorflow", "coremltools", "tflite_runtime") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` raise ImportError
    root = logging.getLogger()
    null = logging.NullHandler()
    root.addHandler(null)  # stops logging.warning() from installing a stderr handler (basicConfig)
    previous = root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)
        root.removeHandler(null)
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


@functools.lru_cache(maxsize=1)
def _basic_pitch() -> Any:
    """basic-pitch's package, imported quietly once per process."""
    with _quiet_import():
        import basic_pitch
        import basic_pitch.note_creation
    return basic_pitch


@functools.lru_cache(maxsize=4)
def load_basic_pitch(threads: int | None = None) -> Any:
    """basic-pitch's ONNX model as an onnxruntime session, loaded once per process (and thread count).

    ``threads`` is onnxruntime's intra-op thread count (default: all cores); worker pools pass
    cores // workers so N workers x threads never oversubscribe the machine.
    """
    bp = _basic_pitch()
    import onnxruntime as ort

    path = bp.build_icassp_2022_model_path(bp.FilenameSuffix.onnx)
    if not path.is_file():
        raise EmolibError("basic-pitch's ONNX model is missing: reinstall `pip install --no-deps basic-pitch==0.4.0`",
                          path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads or cpu_count()))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    # no busy-waiting between ops: on a shared or oversubscribed machine spinning threads steal cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------- one file
def _predict(session: Any, audio: np.ndarray, batch: int = 1) -> dict[str, np.ndarray]:
    """Run the model over overlapping 2 s windows and stitch the frame-wise outputs back together."""
    padded = np.concatenate([np.zeros(_OVERLAP_SAMPLES // 2, dtype=np.float32), audio])
    n_windows = max(1, math.ceil(padded.size / _HOP_SAMPLES))
    total = (n_windows - 1) * _HOP_SAMPLES + _WINDOW_SAMPLES
    padded = np.pad(padded, (0, max(0, total - padded.size)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, _WINDOW_SAMPLES)[::_HOP_SAMPLES][:n_windows]
    names = list(_ONNX_OUTPUTS.values())
    parts: dict[str, list[np.ndarray]] = {key: [] for key in _ONNX_OUTPUTS}
    for start in range(0, n_windows, batch):
        x = np.ascontiguousarray(windows[start:start + batch], dtype=np.float32)[..., None]
        for key, value in zip(_ONNX_OUTPUTS, session.run(names, {_ONNX_INPUT: x})):
            parts[key].append(value)
    n_frames = int(np.floor(audio.size * (MODEL_SAMPLE_RATE // _FFT_HOP) / MODEL_SAMPLE_RATE))
    half = _OVERLAP_FRAMES // 2
    out = {}
    for key, chunks in parts.items():
        stacked = np.concatenate(chunks)[:, half:-half, :]
        out[key] = stacked.reshape(-1, stacked.shape[-1])[:n_frames]
    return out


def transcribe_audio(audio: np.ndarray, sample_rate: int = MODEL_SAMPLE_RATE, settings: Settings | None = None,
                     *, threads: int | None = None, **overrides: Any):
    """Transcribe mono audio samples to a PrettyMIDI: one piano (program 0), notes sorted by start.

    ``settings`` (or keyword overrides such as ``onset_threshold=0.6``) tune basic-pitch's note
    decoding; the model is loaded once per process.
    """
    import pretty_midi

    settings = dataclasses.replace(settings or Settings(), **overrides)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=0 if audio.shape[0] <= 2 else 1)
    if sample_rate != MODEL_SAMPLE_RATE:
        import soxr

        audio = soxr.resample(audio, sample_rate, MODEL_SAMPLE_RATE, quality="HQ").astype(np.float32)
    midi = pretty_midi.PrettyMIDI(initial_tempo=settings.midi_tempo)
    piano = pretty_midi.Instrument(program=0, name="Piano")
    midi.instruments.append(piano)
    if audio.size == 0 or float(np.max(np.abs(audio))) < SILENCE_PEAK:
        return midi
    output = _predict(load_basic_pitch(threads), audio)
    bp = _basic_pitch()
    min_note_frames = int(np.round(settings.min_note_ms / 1000 * (MODEL_SAMPLE_RATE / _FFT_HOP)))
    with _quiet_import():
        _, events = bp.note_creation.model_output_to_notes(
            output, onset_thresh=settings.onset_threshold, frame_thresh=settings.frame_threshold,
            min_note_len=min_note_frames, min_freq=settings.min_freq, max_freq=settings.max_freq,
            include_pitch_bends=False, melodia_trick=settings.melodia_trick, midi_tempo=settings.midi_tempo,
        )
    for start, end, pitch, amplitude, _bends in events:
        start = max(0.0, float(start))
        end = max(float(end), start + 1e-3)
        velocity = int(np.clip(np.round(127 * float(amplitude)), 1, 127))
        piano.notes.append(pretty_midi.Note(velocity=velocity, pitch=int(pitch), start=start, end=end))
    piano.notes.sort(key=lambda n: (n.start, n.pitch))
    return midi


def transcribe(path: str | os.PathLike, settings: Settings | None = None, *, threads: int | None = None,
               **overrides: Any):
    """Transcribe one audio file (mp3, wav, ogg, flac; m4a where ffmpeg is installed) to a PrettyMIDI.

    Raises EmolibError naming the file for audio that can't be decoded; a silent file gives a
    MIDI with no notes.
    """
    audio = load_audio(path, MODEL_SAMPLE_RATE)
    return transcribe_audio(audio, MODEL_SAMPLE_RATE, settings, threads=threads, **overrides)


def transcribe_file(in_path: str | os.PathLike, out_path: str | os.PathLike, settings: Settings | None = None,
                    *, threads: int | None = None) -> dict[str, Any]:
    """Transcribe one audio file to MIDI with basic-pitch (ONNX), written atomically.

    Parameters
    ----------
    in_path : str or os.PathLike
        The audio (MP3, WAV, FLAC, OGG...; m4a/opus through ffmpeg).
    out_path : str or os.PathLike
        The ``.mid`` file to write.
    settings : Settings or None
        Note thresholds and frequency range (default ``Settings()``).
    threads : int or None
        onnxruntime threads (default: its own choice).

    Returns
    -------
    row : dict
        input, output, status (``"converted"`` or ``"failed"``), seconds of audio, notes, error.
        Bad audio never raises: its status is then ``"failed"`` with the reason in ``error``.
    """
    from emolib.files import write_bytes
    from emolib.notes import midi_bytes

    row: dict[str, Any] = {"input": str(in_path), "output": str(out_path), "status": "failed",
                           "seconds": None, "notes": None, "error": None}
    started = time.perf_counter()
    try:
        audio = load_audio(in_path, MODEL_SAMPLE_RATE)
        row["seconds"] = round(audio.size / MODEL_SAMPLE_RATE, 3)
        peak = float(np.max(np.abs(audio)))
        if peak < SILENCE_PEAK:
            raise EmolibError(f"silent audio (peak level {peak:.1e}): no notes to transcribe", in_path)
        midi = transcribe_audio(audio, MODEL_SAMPLE_RATE, settings, threads=threads)
        n_notes = len(midi.instruments[0].notes)
        if n_notes == 0:
            raise EmolibError("no notes found (silent, noise or unpitched audio)", in_path)
        write_bytes(out_path, midi_bytes(midi))
        row.update(status="converted", notes=n_notes)
    except EmolibError as err:
        row["error"] = str(err)
    except MemoryError:
        row["error"] = f"{in_path}: out of memory (file too long?)"
    except Exception as err:  # a bad file must never stop the batch: report it with its type
        row["error"] = f"{in_path}: {type(err).__name__}: {err}"
    row["wall_seconds"] = round(time.perf_counter() - started, 3)
    return row


# --------------------------------------------------------------------------- folder tree
def find_audio(in_dir: str | os.PathLike) -> list[Path]:
    """Audio files (supported and recognised-unsupported extensions) under ``in_dir``, sorted; hidden
    files and folders are ignored."""
    root = Path(in_dir)
    if not root.is_dir():
        raise EmolibError("input folder not found", root)
    wanted = set(AUDIO_SUFFIXES) | set(UNSUPPORTED_AUDIO_SUFFIXES)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in wanted:
                found.append(Path(dirpath) / name)
    return sorted(found)


def output_path(in_path: Path, in_dir: Path, out_dir: Path) -> Path:
    """``IN/<emotion>/sub/name.mp3`` -> ``OUT/<emotion>/sub/name.mid``."""
    return (Path(out_dir) / Path(in_path).relative_to(in_dir)).with_suffix(".mid")


def _notes_if_up_to_date(src: Path, dest: Path) -> int | None:
    """The note count of ``dest`` when it is newer than ``src`` and a readable MIDI, else None (redo it)."""
    try:
        if not dest.is_file() or dest.stat().st_mtime < src.stat().st_mtime:
            return None
        from emolib.notes import load_midi

        return sum(len(inst.notes) for inst in load_midi(dest).instruments)
    except Exception:  # unreadable/corrupt output or vanished input: convert again
        return None


def _clean_stale_temps(out_dir: Path) -> int:
    """Remove temporary MIDI files left by a run that was killed mid-write."""
    removed = 0
    if out_dir.is_dir():
        for dirpath, _dirs, filenames in os.walk(out_dir):
            for name in filenames:
                if _TEMP_MIDI.match(name):
                    with contextlib.suppress(OSError):
                        os.remove(os.path.join(dirpath, name))
                        removed += 1
    return removed


def _emotion(in_path: Path, in_dir: Path) -> str | None:
    parts = in_path.relative_to(in_dir).parts
    return parts[0] if len(parts) > 1 else None


# Worker-process state: the settings and threads for this pool (the model is cached by load_basic_pitch).
_WORKER: dict[str, Any] = {}


def _init_worker(settings: Settings, threads: int) -> None:
    """Pool initialiser: remember the settings and load the model once per worker process."""
    _WORKER.update(settings=settings, threads=threads)
    load_basic_pitch(threads)


def _work(job: tuple[str, str]) -> dict[str, Any]:
    return transcribe_file(job[0], job[1], _WORKER["settings"], threads=_WORKER["threads"])


def _plan_tree(files: list[Path], in_dir: Path, out_dir: Path, force: bool) -> tuple[list[dict[str, Any]],
                                                                                    list[tuple[str, str]]]:
    """(rows already decided: skipped files and name clashes, jobs still to transcribe)."""
    rows: list[dict[str, Any]] = []
    jobs: list[tuple[str, str]] = []
    claimed: dict[Path, Path] = {}
    for src in files:
        dest = output_path(src, in_dir, out_dir)
        row = {"input": str(src), "output": str(dest), "emotion": _emotion(src, in_dir)}
        if dest in claimed:
            rows.append({**row, "status": "failed", "seconds": None, "notes": None,
                         "error": f"{src}: same output name as {claimed[dest].name} ({dest.name}); rename one"})
            continue
        claimed[dest] = src
        notes = None if force else _notes_if_up_to_date(src, dest)
        if notes is not None:
            rows.append({**row, "status": "skipped", "seconds": audio_duration(src), "notes": notes, "error": None})
        else:
            jobs.append((str(src), str(dest)))
    return rows, jobs


def _transcribe_jobs(jobs: list[tuple[str, str]], n_workers: int, threads: int, settings: Settings,
                     emotions: dict[str, str | None], finish: Callable[[dict[str, Any]], None]) -> None:
    """Transcribe the jobs in this process (one worker) or in a crash-tolerant pool; ``finish`` each row."""
    if n_workers == 1:
        for src, dest in jobs:
            finish({**transcribe_file(src, dest, settings, threads=threads), "emotion": emotions[src]})
        return

    def done(job: tuple[str, str], row: dict[str, Any] | None, error: str | None) -> None:
        src, dest = job
        if row is None:
            row = {"input": src, "output": dest, "status": "failed", "seconds": None, "notes": None,
                   "error": f"{src}: {error}"}
        finish({**row, "emotion": emotions[src]})

    run_pool(jobs, n_workers, _work, done, initializer=_init_worker, initargs=(settings, threads))


def _summary(rows: list[dict[str, Any]], wall: float, workers: int, report_path: Path) -> dict[str, Any]:
    audio_seconds = sum(r["seconds"] or 0.0 for r in rows if r["status"] == "converted")
    failures = [{"input": r["input"], "error": r["error"]} for r in rows if r["status"] == "failed"]
    return {
        "summary": True,
        "files": len(rows),
        "converted": sum(r["status"] == "converted" for r in rows),
        "skipped": sum(r["status"] == "skipped" for r in rows),
        "failed": len(failures),
        "audio_seconds": round(audio_seconds, 2),
        "wall_seconds": round(wall, 2),
        "realtime": round(audio_seconds / wall, 1) if wall > 0 else None,
        "workers": workers,
        "report": str(report_path),
        "failures": failures,
    }


def transcribe_tree(in_dir: str | os.PathLike, out_dir: str | os.PathLike, *, workers: int | None = None,
                    force: bool = False, report: str | os.PathLike | None = None,
                    on_result: Callable[[dict[str, Any]], None] | None = None, progress: bool = True,
                    settings: Settings | None = None, **overrides: Any) -> dict[str, Any]:
    """Transcribe every audio file under ``in_dir`` to a mirrored MIDI tree under ``out_dir``.

    Resumable, parallel, atomic per file, and tolerant of bad files.

    Parameters
    ----------
    in_dir, out_dir : str or os.PathLike
        The audio tree (e.g. ``music/mp3/<emotion>/``) and the MIDI tree to mirror it into.
    workers : int or None
        Processes, each loading the model once (default: all cores).
    force : bool
        Redo files whose output is newer than their input (skipped by default).
    report : str, os.PathLike or None
        The JSON report to write (default ``OUT_DIR/transcribe_report.json``).
    on_result : callable or None
        Gets each file's row as it finishes (input, output, emotion, status
        converted/skipped/failed, seconds of audio, notes, error).
    progress : bool
        A tqdm bar on stderr.
    settings : Settings or None
        Note thresholds and frequency range; ``**overrides`` replace single fields of it.

    Returns
    -------
    summary : dict
        converted, skipped, failed, audio_seconds, wall_seconds, realtime (audio seconds per wall
        second), failures (input + reason).
    """
    from tqdm.auto import tqdm

    from emolib.files import write_json

    started = time.perf_counter()
    settings = dataclasses.replace(settings or Settings(), **overrides)
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    files = find_audio(in_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _clean_stale_temps(out_dir)
    report_path = Path(report) if report is not None else out_dir / REPORT_NAME
    decided, jobs = _plan_tree(files, in_dir, out_dir, force)
    emotions = {src: _emotion(Path(src), in_dir) for src, _ in jobs}
    n_workers = max(1, min(int(workers or cpu_count()), len(jobs) or 1))
    threads = max(1, cpu_count() // n_workers)
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(files), desc="transcribe", unit="file", disable=not progress or not files,
               file=sys.stderr, dynamic_ncols=True)

    def finish(row: dict[str, Any]) -> None:
        rows.append(row)
        bar.update(1)
        if row["status"] == "failed":
            bar.set_postfix(failed=sum(r["status"] == "failed" for r in rows), refresh=False)
        if on_result is not None:
            on_result(row)

    try:
        for row in decided:  # skipped files and name clashes first
            finish(row)
        if jobs:
            _transcribe_jobs(jobs, n_workers, threads, settings, emotions, finish)
    finally:
        bar.close()
    summary = _summary(rows, time.perf_counter() - started, n_workers if jobs else 0, report_path)
    write_json(report_path, {
        "in_dir": str(in_dir), "out_dir": str(out_dir), "force": force,
        "settings": dataclasses.asdict(settings), "summary": summary,
        "files": sorted(rows, key=lambda r: r["input"]),
    })
    return summary
