"""`emolib app` in headless Chromium (Debian's package, driven by Playwright): what a class demo does.

Skipped with the reason when Chromium or Playwright is missing (``make test`` installs Chromium).
Screenshots go to tests/artifacts/ (or $EMOLIB_ARTIFACTS).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import browser

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing()))]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    proc, url = browser.start_app(root / "out")
    yield url, root / "out"
    browser.stop_app(proc)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return browser.face_video(tmp_path_factory.mktemp("camera") / "face.y4m")


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def chromium(playwright, video):
    """Chromium whose camera is a video of the sample face, granted without asking."""
    chromium = playwright.chromium.launch(executable_path=str(browser.CHROMIUM), headless=True, args=[
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video}"])
    yield chromium
    chromium.close()


@pytest.fixture
def page(chromium, server):
    """A fresh visitor; fails the test on console errors or on any request leaving 127.0.0.1."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    errors, external = [], []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("request", lambda r: external.append(r.url) if browser.is_external(r.url) else None)
    pg.goto(server[0])
    pg.get_by_role("button", name="Use sample photo").wait_for(timeout=60_000)
    yield pg
    context.close()
    assert not external, f"requests to the internet: {external}"
    assert not errors, f"console errors: {errors}"


#: JavaScript: (length, checksum) of the WAV behind the page's *Download WAV* button.
WAV_DIGEST = """async () => { const a = [...document.querySelectorAll('a.emolib-download')].pop();
  const b = new Uint8Array(await (await fetch(a.href)).arrayBuffer());
  let h = 0; for (let i = 0; i < b.length; i += 3) h = (h * 31 + b[i]) >>> 0;
  return [b.length, h]; }"""


def _status(page) -> str:
    """The status line alone (the whole app's text would include the title and every dropdown option)."""
    return page.locator(".emolib-status").inner_text()


def _saved(out: Path, stem: str) -> dict:
    """The summary JSON the app wrote for a photo named ``stem`` (visitors' folders under ``out``)."""
    found = sorted(out.glob(f"visitor-*/{stem}_seed*.json"), key=lambda p: p.stat().st_mtime)
    assert found, f"no {stem}_seed*.json under {out}"
    return json.loads(found[-1].read_text())


def _shots(page, name: str) -> None:
    browser.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 400):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(300)
        page.screenshot(path=str(browser.ARTIFACTS / f"{name}_{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def _sample(page, previous: str | None = None) -> dict:
    page.get_by_role("button", name="Use sample photo").click()
    return browser.wait_for_audio(page, previous)


def test_page_shows_only_the_app(chromium, server):
    """A fresh page shows the app and nothing of the notebook behind it. How fast it appears is
    measured by benchmarks/bench_app_visitors.py (page load to usable app), not asserted here: a
    timed test fails on a slower or busier machine, not on slower code."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.goto(server[0])
    pg.get_by_role("button", name="Upload photo").wait_for(timeout=60_000)
    text = pg.locator("body").inner_text()
    _shots(pg, "app_empty")
    no_player = pg.locator("audio").count() == 0 and pg.locator("img").count() == 0
    context.close()
    assert "emolib: your face, your music" in text and "MusicApp" not in text and str(server[1]) not in text
    assert no_player


def test_sample_photo_music_and_downloads(page, tmp_path):
    assert page.locator("audio").count() == 0 and page.locator("img").count() == 0  # nothing empty shown
    audio = _sample(page)
    assert audio["duration"] >= 30
    for label, magic in (("Download MIDI", b"MThd"), ("Download WAV", b"RIFF")):
        with page.expect_download() as info:
            page.get_by_role("link", name=label).click()
        path = tmp_path / info.value.suggested_filename
        info.value.save_as(path)
        assert path.read_bytes()[:4] == magic, label
    _shots(page, "app_sample")


def test_upload_through_the_file_chooser(page):
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Upload photo").click()
    chooser.value.set_files(str(browser.SAMPLE_PHOTO))
    assert browser.wait_for_audio(page)["duration"] >= 30
    assert "happy face (1 face(s) found) -> happy music" in _status(page)


def test_a_20_mb_phone_photo_gets_music(page, server, tmp_path):
    big = tmp_path / "phone.jpg"
    big.write_bytes(browser.noisy_photo())
    assert big.stat().st_size >= 19_000_000
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Upload photo").click()
    chooser.value.set_files(str(big))
    assert browser.wait_for_audio(page)["duration"] >= 30  # downscaled in the browser, sent in chunks
    summary = _saved(server[1], "phone")
    assert max(summary["size"]) <= 2048 < browser.image_side(big)  # the browser sent a smaller copy


def test_a_file_over_the_limit_gets_a_clear_message(page, tmp_path):
    _sample(page)
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(b"\xff" * (26 * 1024 * 1024))
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Upload photo").click()
    chooser.value.set_files(str(huge))
    page.get_by_text("photos up to 25.0 MB only").first.wait_for(timeout=30_000)
    page.wait_for_function("() => !document.querySelector('audio')", timeout=30_000)
    assert "photos up to 25.0 MB only" in _status(page) and page.get_by_text("photos up to 25.0 MB only").count() == 1


def test_a_non_image_shows_the_error_and_clears_the_result(page, tmp_path):
    _sample(page)
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a photo")
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Upload photo").click()
    chooser.value.set_files(str(notes))
    page.get_by_text("Could not use this photo").wait_for(timeout=30_000)
    assert "notes.txt" in _status(page)
    assert page.locator("audio").count() == 0 and page.locator("img").count() == 0
    assert page.locator("a.emolib-download").count() == 0
    _shots(page, "app_error")


def test_make_music_again_and_new_piece(page):
    first = _sample(page)
    wav = page.get_by_role("link", name="Download WAV")
    before = page.evaluate(WAV_DIGEST)
    name = wav.get_attribute("download")
    seed = page.get_by_label("seed").input_value()
    # the same photo, settings and seed again: the same music, saved and offered under a new name
    page.get_by_role("button", name="Make music").click()
    again = browser.wait_for_audio(page, first["src"])
    page.wait_for_function("old => [...document.querySelectorAll('a.emolib-download')].pop().download !== old",
                           arg=name, timeout=30_000)
    assert page.evaluate(WAV_DIGEST) == before and wav.get_attribute("download") == name.replace(".wav", "-2.wav")
    page.get_by_role("button", name="New piece").click()
    browser.wait_for_audio(page, again["src"])
    assert page.get_by_label("seed").input_value() != seed
    assert page.evaluate(WAV_DIGEST) != before  # different music


def test_settings_then_make_music_changes_the_length(page):
    first = _sample(page)
    assert first["duration"] >= 35
    knob = page.locator(".emolib-knob").first  # the seconds slider: 40 -> 20 in steps of 5
    handle = knob.locator(".noUi-handle")
    for seconds in (35, 30, 25, 20):  # one key at a time, each seen by the slider (the kernel echoes values)
        handle.focus()
        handle.press("ArrowLeft")
        page.wait_for_function("([el, want]) => el.innerText.includes(want)",
                               arg=[knob.locator(".widget-readout").element_handle(), str(seconds)], timeout=10_000)
    # ipywidgets keeps one state update in flight and queues the rest, while a click goes at once:
    # give the queued slider values time to reach the kernel (under load a 25 s piece came back once)
    page.wait_for_timeout(2_000)
    page.get_by_role("button", name="Make music").click()
    audio = browser.wait_for_audio(page, first["src"])
    assert 18 <= audio["duration"] <= 23


def test_webcam_photo_makes_music(page):
    page.get_by_role("button", name="Camera").click()
    page.wait_for_function("() => { const v = document.querySelector('video'); return v && v.videoWidth > 0 }",
                           timeout=30_000)
    _shots(page, "app_camera")
    page.get_by_role("button", name="Take photo").click()
    assert browser.wait_for_audio(page)["duration"] >= 30
    status = _status(page)
    assert "face (" in status and " music, " in status and "seed" in status, status
    page.get_by_role("button", name="Close camera").click()


def test_denied_camera_says_so(playwright, server):
    # no fake-ui flag and no camera permission: the browser denies
    chromium = playwright.chromium.launch(executable_path=str(browser.CHROMIUM), headless=True,
                                          args=["--use-fake-device-for-media-stream"])
    try:
        pg = chromium.new_context(permissions=[]).new_page()
        pg.goto(server[0])
        pg.get_by_role("button", name="Camera").click()
        pg.get_by_text("Upload photo instead").first.wait_for(timeout=30_000)
        text = _status(pg)
        said = pg.get_by_text("Upload photo instead").count()
        _shots(pg, "app_camera_denied")
    finally:
        chromium.close()
    assert "denied" in text or "could not start" in text or "No camera" in text
    assert said == 1  # in the status line only, not again under the camera button
