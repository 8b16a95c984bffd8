"""MIDI -> audio you can hear: FluidSynth with pretty_midi's bundled General MIDI soundfont.

Where the FluidSynth system library is missing (a fresh Colab runtime), rendering falls back to
pretty_midi's simple sine synthesis and warns once with the exact install command; it never fails
the run for it.
"""
from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np

#: What to run when FluidSynth's library is missing (pretty_midi's own message blames pyfluidsynth).
INSTALL_HINT = ("FluidSynth's system library is missing, so audio uses simple sine synthesis. "
                "Install it: `sudo apt-get install -y libfluidsynth3` (Debian/Ubuntu) or, in Colab, "
                "`!apt-get install -y fluidsynth`, then restart Python.")
DEFAULT_SAMPLE_RATE = 44100
#: Audio file suffixes read (case-insensitive); m4a and opus need ffmpeg (through audioread) to decode.
AUDIO_SUFFIXES = (".mp3", ".wav", ".ogg", ".flac", ".m4a", ".aif", ".aiff", ".opus")
#: Audio suffixes recognised but not supported: reported as failures, not silently ignored.
UNSUPPORTED_AUDIO_SUFFIXES = (".wma", ".aac", ".ape", ".amr", ".ra", ".rm", ".mka", ".wv", ".ac3", ".mp2")
_warned = False


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
