import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from emolib import audio
from tests.mididata import melody_midi


def _scale(seconds_per_note: float = 0.25) -> pretty_midi.PrettyMIDI:
    return melody_midi([60, 62, 64, 65, 67, 69, 71, 72], spacing=seconds_per_note)


def _dominant_hz(signal: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size)))
    return float(np.fft.rfftfreq(signal.size, 1 / sr)[np.argmax(spectrum)])


def test_fluidsynth_library_is_installed_here():
    assert audio.fluidsynth_available(), audio.INSTALL_HINT


def test_render_is_normalised_faded_and_tracks_the_notes():
    sr = 22050
    wav = audio.render(_scale(), sample_rate=sr)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert 2.0 <= wav.size / sr <= 3.5  # 2 s of notes plus at most ~1 s of release
    assert np.max(np.abs(wav)) == pytest.approx(0.9, abs=1e-3)
    assert abs(wav[-1]) < 1e-3  # faded out
    # the first note is middle C (261.6 Hz): its fundamental or an octave partial dominates
    hz = _dominant_hz(wav[int(0.05 * sr): int(0.2 * sr)], sr)
    assert min(abs(hz / 261.6 - k) for k in (1, 2, 3)) < 0.05


def test_missing_fluidsynth_falls_back_and_warns_once(monkeypatch):
    monkeypatch.setattr(audio, "fluidsynth_available", lambda: False)
    monkeypatch.setattr(audio, "_warned", False)
    with pytest.warns(RuntimeWarning, match="apt-get install"):
        wav = audio.render(_scale(), sample_rate=8000)
    assert np.max(np.abs(wav)) > 0.5
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        audio.render(_scale(), sample_rate=8000)  # second call: no second warning


def test_write_wav_round_trips(tmp_path):
    sr = 16000
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr).astype(np.float32)
    path = audio.write_wav(tmp_path / "a.wav", tone, sr)
    data, rate = sf.read(path)
    assert rate == sr and data.shape == (sr,)
    assert np.allclose(data, tone, atol=1e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]
