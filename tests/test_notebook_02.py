"""Notebook 02 runs headless on a tiny MP3 library the test renders, and shows what the spec names."""
import pretty_midi
import soundfile as sf

from emolib import audio
from tests.mididata import melody_midi
from tests.notebooks import cell_outputs_text, execute_notebook

SR = 22050


def test_notebook_02_transcribes_a_tiny_library(tmp_path):
    midi = melody_midi([60, 64, 67, 72, 67, 64], first=0.1, spacing=0.4, length=0.35)
    wav = audio.render(midi, sample_rate=SR)
    mp3s, out = tmp_path / "mp3", tmp_path / "midi"
    for emotion in ("happy", "sad"):
        (mp3s / emotion).mkdir(parents=True)
        sf.write(mp3s / emotion / f"{emotion}_tune.mp3", wav, SR, format="MP3")
    (mp3s / "sad" / "broken.mp3").write_bytes(b"\xff\xfb not really an mp3" * 50)

    nb = execute_notebook("02_mp3_to_midi.ipynb", {"MP3_DIR": str(mp3s), "MIDI_OUT_DIR": str(out), "WORKERS": 1,
                                                   "EXAMPLE": "sad/sad_tune.mp3"}, tmp_path)

    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.mid"))
    assert written == ["happy/happy_tune.mid", "sad/sad_tune.mid"]
    notes = sorted(pretty_midi.PrettyMIDI(str(out / written[0])).instruments[0].notes, key=lambda n: n.start)
    assert [n.pitch for n in notes][:3] == [60, 64, 67] and {n.pitch for n in notes} >= {60, 64, 67, 72}
    text = cell_outputs_text(nb)
    assert "converted 2, skipped 0 (already done), failed 1" in text
    assert "broken.mp3" in text and "corrupt" in text
    assert "sad/sad_tune.mp3 -> sad_tune.mid" in text
    html = "".join(o["data"].get("text/html", "") for c in nb.cells for o in c.get("outputs", []) if "data" in o)
    assert "<audio" in html  # the audio player
    assert "happy" in html and "notes per file" in html  # the per-emotion table
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 1  # spectrogram + piano roll side by side
