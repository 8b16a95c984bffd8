"""The app driven in code: photo bytes in, files and widget outputs out (no browser)."""

import pytest

from emolib import widgets
from emolib.photo_input import UPLOAD_LIMIT, PhotoInput
from emolib.pipeline import SAMPLE_PHOTO
from emolib.widgets import AUTO, MusicApp

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def app(tmp_path):
    return MusicApp(tmp_path, seconds=10, seed=4)


def _pitches(result):
    return [n.pitch for i in result.midi.instruments for n in i.notes]


def _assert_cleared(app):
    assert app.result is None and app.files == {}
    assert app.results.children == ()
    for image in (app.photo, app.probabilities, app.roll):
        assert bytes(image.value) == b""
    assert app.player.wav == b"" and app.player.midi == b"" and app.player.stem == ""
    assert app.make_button.disabled and app.new_button.disabled


def test_nothing_shown_before_the_first_photo(app):
    assert app.results.children == ()  # no broken images, no empty 0:00 player
    assert app.make_button.disabled and app.new_button.disabled
    assert app.emotion.value == AUTO and app.emotion.label == "as recognised"  # not a blank dropdown


def test_upload_runs_the_pipeline_and_fills_every_output(app, tmp_path):
    app.photo_input.receive(SAMPLE_PHOTO.read_bytes(), "me.jpg")
    r = app.result
    assert r is not None and r.face_found
    for ext in (".mid", ".wav", ".json"):
        assert (tmp_path / f"me_seed4{ext}").exists()
    for image in (app.photo, app.probabilities, app.roll):
        assert bytes(image.value).startswith(PNG) and len(image.value) > 2000
    assert app.results.children and app.player in app.results.children
    assert app.player.wav == (tmp_path / "me_seed4.wav").read_bytes()
    assert app.player.midi == (tmp_path / "me_seed4.mid").read_bytes() and app.player.stem == "me_seed4"
    assert r.emotion in app.status.value and r.music_emotion in app.status.value and "seed 4" in app.status.value
    assert not app.make_button.disabled and not app.new_button.disabled


def test_same_photo_and_seed_twice_never_overwrites(app, tmp_path):
    app.sample_button.click()
    app.make_button.click()
    assert sorted(p.name for p in tmp_path.glob("*.wav")) == ["astronaut_seed4-2.wav", "astronaut_seed4.wav"]


def test_make_music_reruns_the_current_photo_with_current_settings(app):
    assert app.make_music() is None and "First upload" in app.status.value
    app.emotion.value = "sad"
    app.sample_button.click()
    r = app.result
    assert r.music_emotion == "sad" and r.overridden and r.seed == 4 and abs(r.seconds - 10) <= 1.5
    app.seconds.value = 20
    app.make_button.click()
    assert app.result.image == SAMPLE_PHOTO.name and abs(app.result.seconds - 20) <= 2


def test_new_piece_draws_a_new_seed_and_shows_it(app):
    app.sample_button.click()
    first = app.result
    app.new_button.click()
    second = app.result
    assert app.seed.value != 4 and second.seed == app.seed.value
    assert _pitches(second) != _pitches(first)
    assert f"seed {app.seed.value}" in app.status.value


def test_a_bad_photo_clears_the_previous_result(app):
    app.sample_button.click()
    assert app.result is not None
    app.photo_input.receive(b"not an image at all", "scan.pdf")
    _assert_cleared(app)
    assert "scan.pdf" in app.status.value and "Could not use this photo" in app.status.value
    app.photo_input.receive(SAMPLE_PHOTO.read_bytes(), "again.jpg")
    assert app.result is not None


def test_upload_limit_gives_a_clear_message(app):
    app.sample_button.click()
    app.run(b"\xff" * (UPLOAD_LIMIT + 1), "huge.jpg")
    _assert_cleared(app)
    assert "huge.jpg" in app.status.value and "25 MB" in app.status.value


def test_browser_problems(app):
    app.sample_button.click()
    app.photo_input._on_message(None, {"kind": "problem", "text": "The browser denied access to the camera",
                                       "photo": False}, [])
    assert "denied" in app.status.value and app.result is not None  # the music stays
    app.photo_input._on_message(None, {"kind": "problem", "text": "big.jpg is 30.0 MB", "photo": True}, [])
    assert "30.0 MB" in app.status.value
    _assert_cleared(app)


def test_photo_input_reassembles_chunks():
    got = []
    widget = PhotoInput()
    widget.on_photo(lambda data, name: got.append((data, name)))
    for i, part in enumerate((b"ab", b"cd", b"e")):
        widget._on_message(None, {"kind": "chunk", "id": "x", "index": i, "total": 3, "name": "p.jpg"},
                           [memoryview(part)])
    assert got == [(b"abcde", "p.jpg")]


def test_photo_input_trusts_no_size_the_page_sends():
    from emolib import photo_input

    got, problems = [], []
    widget = PhotoInput()
    widget.on_photo(lambda data, name: got.append(data))
    widget.on_problem(lambda text, about_photo: problems.append((text, about_photo)))
    chunk = {"kind": "chunk", "name": "p.jpg"}
    most = -(-widget.max_bytes // photo_input.CHUNK_BYTES) + 1
    widget._on_message(None, {**chunk, "id": "a", "index": 0, "total": 10**10}, [b"x"])  # no 80 GB list
    widget._on_message(None, {**chunk, "id": "b", "index": most, "total": most}, [b"x"])  # index out of range
    widget._on_message(None, {**chunk, "id": "c", "index": 0, "total": 1}, [b"x" * (photo_input.CHUNK_BYTES + 1)])
    assert got == [] and len(problems) == 3 and all(about for _, about in problems) and not widget._parts
    assert "25 MB" in problems[0][0]
    widget._on_message(None, {**chunk, "id": "d", "index": 0, "total": 2}, [b"ab"])
    widget._on_message(None, {**chunk, "id": "e", "index": 0, "total": 2}, [b"cd"])  # a new upload replaces d
    assert list(widget._parts) == ["e"]
    widget._on_message(None, {**chunk, "id": "e", "index": 1, "total": 2}, [b"ef"])
    assert got == [b"cdef"] and not widget._parts
    assert f"const CHUNK = {photo_input.CHUNK_BYTES // 1024} * 1024;" in photo_input._ESM  # the page's piece size


def test_busy_state_while_working(app, monkeypatch):
    seen = {}
    real = widgets.image_to_music

    def spy(*args, **kwargs):
        seen.update(sample=app.sample_button.disabled, camera=app.photo_input.busy, status=app.status.value)
        return real(*args, **kwargs)

    monkeypatch.setattr(widgets, "image_to_music", spy)
    app.sample_button.click()
    assert seen["sample"] and seen["camera"] and "emolib-spinner" in seen["status"]
    assert not app.sample_button.disabled and not app.photo_input.busy


def test_a_failure_while_showing_leaves_no_spinner_and_no_half_result(app, monkeypatch):
    from emolib import plots

    def broken(*args, **kwargs):
        raise RuntimeError("plotting broke")

    monkeypatch.setattr(plots, "piano_roll", broken)
    with pytest.raises(RuntimeError, match="plotting broke"):  # the server log gets it; the page says so
        app.run(SAMPLE_PHOTO.read_bytes(), "me.jpg")
    assert "emolib-spinner" not in app.status.value and "Something went wrong" in app.status.value
    assert not app.sample_button.disabled and app.make_button.disabled  # no photo to rerun
    _assert_cleared(app)


def test_each_visitor_gets_a_folder_and_no_server_paths(tmp_path):
    a, b = MusicApp(tmp_path, seconds=10, visitor_folder=True), MusicApp(tmp_path, seconds=10, visitor_folder=True)
    assert a.out_dir != b.out_dir and a.out_dir.parent == tmp_path == b.out_dir.parent
    a.sample_button.click()
    assert sorted(p.suffix for p in a.out_dir.iterdir()) == [".json", ".mid", ".wav"]
    assert not b.out_dir.exists() and str(tmp_path) not in a.status.value


def test_warm_up_then_run(app):
    app.warm_up()
    app.sample_button.click()
    assert app.result is not None and not app._warming.is_alive()


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


def test_app_page_config():
    from emolib.app import APP_NOTEBOOK, TEMPLATE_ROOT, voila_config

    cfg = voila_config(host="127.0.0.1", port=9999, cull_minutes=3, pool=1)
    assert cfg.VoilaConfiguration.strip_sources and cfg.VoilaConfiguration.template == "emolib"
    assert cfg.VoilaConfiguration.preheat_kernel and cfg.VoilaConfiguration.default_pool_size == 1
    assert cfg.MappingKernelManager.cull_idle_timeout == 180
    assert cfg.Voila.tornado_settings["websocket_max_message_size"] > UPLOAD_LIMIT
    assert APP_NOTEBOOK.exists()
    import re
    from pathlib import Path

    from jupyter_core.paths import jupyter_path

    ours = (TEMPLATE_ROOT / "voila" / "templates" / "emolib" / "index.html.j2").read_text()
    removed = re.findall(r"replace\('(<link [^']*cdn\.jsdelivr[^']*)', ''\)", ours)
    lab = next(p for p in map(Path, jupyter_path("voila", "templates", "lab", "index.html.j2")) if p.exists())
    external = set(re.findall(r'<link [^>]*href="https?://[^>]*>', lab.read_text()))
    assert len(removed) == 2 and set(removed) == external  # every external link of Voila's page, verbatim
