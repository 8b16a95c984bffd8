"""Audio in and out: decoding audio files (for transcription) and MIDI -> audio you can hear.

Decoding (:func:`load_audio`): soundfile (libsndfile: wav, flac, ogg, mp3, aiff) first; what it
cannot read (m4a, opus) goes to audioread, which needs ffmpeg for those; every problem is an
EmolibError naming the file (missing, unreadable, empty, corrupt, truncated, no decoder).

Rendering (:func:`render`): FluidSynth with pretty_midi's bundled General MIDI soundfont. Where the
FluidSynth system library is missing (a fresh Colab runtime), rendering falls back to
pretty_midi's simple sine synthesis and warns once with the exact install command; it never fails
the run for it.
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from emolib.errors import EmolibError

__all__ = ["AUDIO_SUFFIXES", "UNSUPPORTED_AUDIO_SUFFIXES", "DECODE_SAMPLE_RATE", "DEFAULT_SAMPLE_RATE", "INSTALL_HINT",
           "FFMPEG_HINT", "load_audio", "audio_duration", "captured_stderr", "fluidsynth_available", "render",
           "write_wav"]

#: What to run when FluidSynth's library is missing (pretty_midi's own message blames pyfluidsynth).
INSTALL_HINT = ("FluidSynth's system library is missing, so audio uses simple sine synthesis. "
                "Install it: `sudo apt-get install -y libfluidsynth3` (Debian/Ubuntu) or, in Colab, "
                "`!apt-get install -y fluidsynth`, then restart Python.")
#: What to run when a format needs ffmpeg and none is installed.
FFMPEG_HINT = "no decoder for it here: install ffmpeg, e.g. `apt-get install ffmpeg`"
#: Rendering sample rate (CD quality).
DEFAULT_SAMPLE_RATE = 44100
#: Decoding sample rate by default (basic-pitch's model rate).
DECODE_SAMPLE_RATE = 22050
#: Audio file suffixes read (case-insensitive); m4a and opus need ffmpeg (through audioread) to decode.
AUDIO_SUFFIXES = (".mp3", ".wav", ".ogg", ".flac", ".m4a", ".aif", ".aiff", ".opus")
#: Audio suffixes recognised but not supported: reported as failures, not silently ignored.
UNSUPPORTED_AUDIO_SUFFIXES = (".wma", ".aac", ".ape", ".amr", ".ra", ".rm", ".mka", ".wv", ".ac3", ".mp2")
_warned = False


# =========================================================================== decoding
@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Capture what C libraries (mpg123) print on file descriptor 2; yields a list filled on exit."""
    captured: list[str] = []
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # e.g. a notebook's stderr object
        fd = 2
    try:
        saved = os.dup(fd)
    except OSError:
        yield captured
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield captured
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            captured.extend(sink.read().decode(errors="replace").splitlines())


def _check_readable(path: Path) -> None:
    """EmolibError naming the file when it is missing, not a file, of an unsupported type, unreadable or empty."""
    ext = path.suffix.lower()
    if not path.exists():
        raise EmolibError("file not found", path)
    if not path.is_file():
        raise EmolibError("not a regular file", path)
    if ext in UNSUPPORTED_AUDIO_SUFFIXES or ext not in AUDIO_SUFFIXES:
        raise EmolibError(f"unsupported format {ext or '(no extension)'}: use one of "
                          f"{', '.join(e[1:] for e in AUDIO_SUFFIXES)}", path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except PermissionError:
        raise EmolibError("permission denied: cannot read the file", path) from None
    except OSError as err:
        raise EmolibError(f"cannot read the file: {err.strerror or err}", path) from None
    if not head:
        raise EmolibError("empty file (0 bytes)", path)


def load_audio(path: str | os.PathLike, sample_rate: int = DECODE_SAMPLE_RATE) -> np.ndarray:
    """Decode an audio file to mono float32 at ``sample_rate``; EmolibError naming the problem if it can't.

    Problems reported: missing, unreadable (permissions), empty, unsupported format, corrupt or
    truncated (a header that promises more audio than the file holds), no decoder (ffmpeg missing).
    """
    path = Path(path)
    ext = path.suffix.lower()
    _check_readable(path)
    import soundfile as sf

    try:
        with captured_stderr() as noise:
            info = sf.info(str(path))
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as err:
        if ext in (".m4a", ".opus") or ext.upper()[1:] not in sf.available_formats():
            data, rate = _decode_with_audioread(path)
            info = None
        else:
            raise EmolibError(f"corrupt or not decodable as {ext[1:]} audio ({_libsndfile_reason(err, noise)})",
                              path) from None
    data = data.mean(axis=1) if data.ndim == 2 else data
    if data.size == 0:
        raise EmolibError("no audio in the file (zero length)", path)
    if info is not None:
        _check_truncation(path, info, data.shape[0], rate)
    if not np.all(np.isfinite(data)):
        raise EmolibError("corrupt audio: decoded samples are not finite numbers", path)
    if rate != sample_rate:
        import soxr  # fast, high quality, no JIT

        data = soxr.resample(data, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(data, dtype=np.float32)


def _libsndfile_reason(err: Exception, noise: list[str]) -> str:
    text = str(err)
    if "does not exist or is not a regular file" in text:  # libsndfile's message for undecodable data
        text = "unrecognised data"
    detail = next((line.strip() for line in reversed(noise) if line.strip()), "")
    return f"{text}; decoder said: {detail}" if detail else text


def _check_truncation(path: Path, info: Any, decoded: int, rate: int) -> None:
    """Fail on files whose header promises more audio than could be decoded (a cut-off download)."""
    declared_seconds = None
    match = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", info.extra_info or "", re.MULTILINE)
    if match and int(match.group(2)) < int(match.group(1)):  # WAV/AIFF: data chunk longer than the file
        declared_seconds = decoded / rate * int(match.group(1)) / max(1, int(match.group(2)))
    elif info.frames and info.frames > decoded:  # MP3 (Xing/VBRI header), others: frame count
        declared_seconds = info.frames / rate
    if declared_seconds is not None:
        got = decoded / rate
        if declared_seconds - got > max(0.5, 0.02 * declared_seconds):
            raise EmolibError(f"truncated audio: the header declares {declared_seconds:.1f} s but only "
                              f"{got:.1f} s could be decoded", path)


def _decode_with_audioread(path: Path) -> tuple[np.ndarray, int]:
    """Formats libsndfile can't read (m4a/aac, opus): audioread directly, which needs ffmpeg for them.

    (librosa 1.x no longer falls back to audioread, so emolib calls it itself.) Returns
    (samples x channels float32 in [-1, 1], sample rate).
    """
    import audioread

    try:
        with captured_stderr(), audioread.audio_open(str(path)) as source:
            rate, channels = int(source.samplerate), max(1, int(source.channels))
            pcm = b"".join(source)  # 16-bit little-endian interleaved PCM
    except audioread.NoBackendError:
        raise EmolibError(f"cannot decode {path.suffix[1:]} audio ({FFMPEG_HINT})", path) from None
    except Exception as err:  # audioread's DecodeError, EOFError, ffmpeg exiting with an error, ...
        raise EmolibError(f"cannot decode {path.suffix[1:]} audio ({type(err).__name__}: {err})", path) from None
    samples = np.frombuffer(pcm[: len(pcm) // (2 * channels) * 2 * channels], dtype="<i2")
    return samples.reshape(-1, channels).astype(np.float32) / 32768.0, rate


def audio_duration(path: str | os.PathLike) -> float | None:
    """Audio length in seconds from the file header (cheap; None where the header can't say)."""
    try:
        import soundfile as sf

        with captured_stderr():
            return round(sf.info(str(path)).duration, 3)
    except Exception:  # any unreadable header: unknown length
        return None

# =========================================================================== rendering


@functools.lru_cache(maxsize=1)
def fluidsynth_available() -> bool:
    """True when pyfluidsynth imports, i.e. the libfluidsynth shared library was found."""
    try:
        import fluidsynth  # noqa: F401  (pyfluidsynth raises ImportError without libfluidsynth)
    except (ImportError, OSError):
        return False
    return True


def _warn_fallback_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(INSTALL_HINT, RuntimeWarning, stacklevel=3)


def render(midi, sample_rate: int = DEFAULT_SAMPLE_RATE, *, soundfont: str | os.PathLike | None = None,
           fade_seconds: float = 0.5, peak: float = 0.9) -> np.ndarray:
    """Render a PrettyMIDI to mono float32 audio, level-normalised to ``peak``, with a short fade-out.

    Uses FluidSynth and the given soundfont (default: pretty_midi's TimGM6mb.sf2); without the
    FluidSynth library it synthesises simple waveforms instead and warns once.
    """
    if fluidsynth_available():
        audio = midi.fluidsynth(fs=sample_rate, sf2_path=None if soundfont is None else str(soundfont))
    else:
        _warn_fallback_once()
        audio = midi.synthesize(fs=sample_rate)
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim > 1:
        audio = audio.mean(axis=0 if audio.shape[0] <= 2 else 1)
    audio = _trim_tail(audio, sample_rate)
    top = float(np.max(np.abs(audio))) if audio.size else 0.0
    if top > 0:
        audio *= peak / top
    n_fade = min(audio.size, int(fade_seconds * sample_rate))
    if n_fade:
        audio[-n_fade:] *= np.linspace(1.0, 0.0, n_fade, dtype=np.float32)
    return audio


def _trim_tail(audio: np.ndarray, sample_rate: int, keep_seconds: float = 1.0, floor: float = 1e-4) -> np.ndarray:
    """Drop the long silent reverb tail FluidSynth appends, keeping about a second of release."""
    loud = np.flatnonzero(np.abs(audio) > floor)
    if loud.size == 0:
        return audio
    return audio[: min(audio.size, loud[-1] + int(keep_seconds * sample_rate))]


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = DEFAULT_SAMPLE_RATE) -> Path:
    """Write mono float audio as 16-bit PCM WAV, atomically."""
    import soundfile as sf

    from emolib.files import atomic_path

    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return Path(path)
