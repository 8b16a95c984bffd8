"""The notebook app driven in code: upload bytes in, files and widget outputs out."""
import base64
import datetime

import pytest

from emolib.pipeline import SAMPLE_PHOTO
from emolib.widgets import MusicApp

PNG = b"\x89PNG\r\n\x1a\n"


def _upload(app, data: bytes, name: str):
    app.upload.value = ({"name": name, "type": "image/jpeg", "size": len(data), "content": memoryview(data),
                         "last_modified": datetime.datetime.now(datetime.UTC)},)


@pytest.fixture
def app(tmp_path):
    return MusicApp(tmp_path, seconds=10, seed=4)


def test_upload_runs_the_pipeline_and_fills_every_output(app, tmp_path):
    _upload(app, SAMPLE_PHOTO.read_bytes(), "me.jpg")
    r = app.result
    assert r is not None and r.face_found
    assert (tmp_path / "me_4.mid").exists() and (tmp_path / "me_4.wav").exists() and (tmp_path / "me_4.json").exists()
    for image in (app.photo, app.probabilities, app.roll):
        assert bytes(image.value).startswith(PNG) and len(image.value) > 2000
    assert bytes(app.player.value)[:4] == b"RIFF"
    assert bytes(app.player.value) == (tmp_path / "me_4.wav").read_bytes()
    midi_href = app.links.value.split('href="data:audio/midi;base64,')[1].split('"')[0]
    assert base64.b64decode(midi_href) == (tmp_path / "me_4.mid").read_bytes()
    assert r.emotion in app.status.value and r.music_emotion in app.status.value


def test_controls_reach_the_pipeline(app):
    app.seconds.value = 15
    app.emotion.value = "sad"
    app.seed.value = 9
    app.sample_button.click()
    r = app.result
    assert r.music_emotion == "sad" and r.overridden and r.seed == 9
    assert abs(r.seconds - 15) <= 1.5
    first = [n.pitch for i in r.midi.instruments for n in i.notes]
    app.seed.value = 10
    app.again_button.click()
    assert [n.pitch for i in app.result.midi.instruments for n in i.notes] != first


def test_bad_upload_shows_the_error_and_keeps_going(app):
    _upload(app, b"not an image at all", "scan.pdf")
    assert app.result is None
    assert "scan.pdf" in app.status.value and "Could not use this photo" in app.status.value
    _upload(app, SAMPLE_PHOTO.read_bytes(), "again.jpg")
    assert app.result is not None


def test_colab_upload_uses_colab_file_picker(app, monkeypatch):
    import sys
    import types

    files = types.SimpleNamespace(upload=lambda: {"big.jpg": SAMPLE_PHOTO.read_bytes()})
    colab = types.ModuleType("google.colab")
    colab.files = files
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert app.colab_upload() is app.result and app.result.image == "big.jpg"


def test_blend_checkbox_reaches_the_pipeline(app):
    app.blend.value = True
    app.sample_button.click()
    assert app.result.blend and "blended" in app.status.value
