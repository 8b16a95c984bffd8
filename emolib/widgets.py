"""The app: a photo (upload, camera or the sample) in, the music its face's emotion makes out.

``MusicApp().widget`` is an ipywidgets box usable in JupyterLab, Voila (``emolib app`` serves it
as a page), VS Code and Colab. Everything it shows is a widget value (PNG images; a player with
the WAV and MIDI downloads, ``emolib.player``), so the callbacks can be driven and checked in
code: ``app.run(data, name)`` is what an upload, a camera photo and the sample button call;
``app.make_music()`` reruns the current photo with the current settings; ``app.new_piece()`` does
so with a new random seed.
"""
from __future__ import annotations

import contextlib
import html
import re
import secrets
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from emolib import MUSIC_EMOTIONS
from emolib.errors import EmolibError
from emolib.photo_input import UPLOAD_LIMIT, PhotoInput
from emolib.pipeline import SAMPLE_PHOTO, MusicResult, image_to_music
from emolib.player import MusicPlayer

__all__ = ["MusicApp", "UPLOAD_LIMIT", "AUTO"]

#: The *music* choice that uses the recognised emotion.
AUTO = "as recognised"

_CSS = """<style>
.emolib-app { max-width: 980px; box-sizing: border-box; gap: 10px; font-size: 15px; }
.emolib-app .emolib-wrap { display: flex; flex-flow: row wrap; gap: 8px 18px; align-items: flex-start; }
.emolib-app .emolib-results { display: flex; flex-flow: row wrap; gap: 12px; align-items: flex-start; }
.emolib-app .emolib-knob { flex: 1 1 300px; min-width: 200px; max-width: 480px; width: auto; }
.emolib-app .emolib-knob .slider-container, .emolib-app .emolib-knob .widget-slider { flex: 1 1 auto; min-width: 80px; }
.emolib-app .widget-button, .emolib-app .widget-label, .emolib-app .widget-checkbox { width: auto; }
.emolib-app button, .emolib-app .emolib-btn { min-height: 34px; padding: 0 14px; font-size: 15px; }
.emolib-app h2 { margin: 4px 0; font-size: 22px; }
.emolib-app img { height: auto; object-fit: contain; }
.emolib-error { color: #b00020; font-weight: 600; }
.emolib-spinner { display: inline-block; width: 14px; height: 14px; margin-right: 8px;
  vertical-align: -2px; border: 3px solid #1976d2; border-top-color: transparent; border-radius: 50%;
  animation: emolib-spin .8s linear infinite; }
@keyframes emolib-spin { to { transform: rotate(360deg); } }
.emolib-photo-input .emolib-btn { border: 1px solid #9e9e9e; border-radius: 4px; background: #eee; cursor: pointer; }
.emolib-photo-input .emolib-primary { background: #1976d2; color: #fff; border-color: #1976d2; }
.emolib-photo-input .emolib-btn:disabled { opacity: .5; cursor: default; }
</style>"""


class MusicApp:
    """Photo -> emotion -> music with upload, camera, sample photo, settings, plots, player and downloads.

    Parameters
    ----------
    out_dir : str or Path
        Where each result's ``.mid``, ``.wav`` and ``.json`` are written.
    seconds, temperature, seed : float, float, int
        The settings the controls start at (length of a piece, sampling temperature, seed).
    visitor_folder : bool
        True (the page ``emolib app`` serves): write into a new folder of its own under
        ``out_dir`` and show no server paths. File names are unique within a folder either way.
    title : str, optional
        A heading shown above the controls.

    Attributes
    ----------
    widget : ipywidgets.VBox
        The app; a notebook displays it (``display(app)`` works too).
    result : MusicResult or None
        The last result shown (None before the first and after an error).
    """

    def __init__(self, out_dir: str | Path = "emolib_out", *, seconds: float = 40.0, temperature: float = 1.0,
                 seed: int = 0, visitor_folder: bool = False, title: str | None = None):
        self.out_dir = Path(out_dir)
        if visitor_folder:
            self.out_dir = self.out_dir / f"visitor-{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        self.show_paths = not visitor_folder
        self.result: MusicResult | None = None
        self.files: dict[str, Path] = {}
        self._last: tuple[bytes, str] | None = None
        self._warming: threading.Thread | None = None
        self._build_controls(seconds, temperature, seed)
        self._build_outputs()
        header = [_w().HTML(f"<h2>{html.escape(title)}</h2>")] if title else []
        self.widget = _w().VBox([_w().HTML(_CSS), *header, self.sources, self.knobs, self.status, self.results])
        self.widget.add_class("emolib-app")

    # ------------------------------------------------------------------ building
    def _build_controls(self, seconds: float, temperature: float, seed: int) -> None:
        from emolib.paths import in_colab

        w = _w()
        self.photo_input = PhotoInput(show_problems=False)  # problems go to the status line, once
        self.photo_input.on_photo(self.run)
        self.photo_input.on_problem(self._on_problem)
        self.sample_button = _button("Use sample photo", "the bundled portrait")
        self.make_button = _button("Make music", "the current photo with the current settings", primary=True)
        self.new_button = _button("New piece", "the current photo with a new random seed")
        self.colab_button = _button("Upload (Colab file picker)", "Colab's own upload dialog")
        self.colab_button.layout.display = None if in_colab() else "none"
        self.sample_button.on_click(lambda _: self.run(SAMPLE_PHOTO.read_bytes(), SAMPLE_PHOTO.name))
        self.make_button.on_click(lambda _: self.make_music())
        self.new_button.on_click(lambda _: self.new_piece())
        self.colab_button.on_click(lambda _: self.colab_upload())
        self.sources = _wrap([self.photo_input, self.sample_button, self.colab_button, self.make_button,
                              self.new_button])
        style = {"description_width": "initial"}
        knob = {"layout": w.Layout(width="auto"), "style": style}
        self.seconds = w.FloatSlider(value=seconds, min=10, max=90, step=5, description="seconds",
                                     readout_format=".0f", **knob)
        self.temperature = w.FloatSlider(value=temperature, min=0.2, max=2.0, step=0.1, description="temperature",
                                         **knob)
        self.seed = w.IntText(value=seed, description="seed", layout=w.Layout(width="150px"), style=style)
        self.emotion = w.Dropdown(options=[AUTO, *MUSIC_EMOTIONS], value=AUTO, description="music",
                                  layout=w.Layout(width="210px"), style=style)
        self.blend = w.Checkbox(value=False, description="blend emotions", indent=False,
                                layout=w.Layout(width="auto"))
        for slider in (self.seconds, self.temperature):
            slider.add_class("emolib-knob")
        self.knobs = _w().VBox([_wrap([self.seconds, self.temperature]),
                                _wrap([self.seed, self.emotion, self.blend])])
        self._set_busy(False)

    def _build_outputs(self) -> None:
        w = _w()
        self.status = w.HTML("Upload a photo of a face, take one with the camera, or use the sample photo.")
        self.status.add_class("emolib-status")
        self.photo = w.Image(format="png", layout=w.Layout(width="360px", max_width="100%"))
        self.probabilities = w.Image(format="png", layout=w.Layout(width="400px", max_width="100%"))
        self.roll = w.Image(format="png", layout=w.Layout(width="800px", max_width="100%"))
        self.player = MusicPlayer()  # the player and both downloads: each file sent once
        pictures = w.Box([self.photo, self.probabilities])
        pictures.add_class("emolib-results")
        # Shown only with a result (no broken images, no empty 0:00 player): children set by _show/_clear.
        self._result_views = (self.player, pictures, self.roll)
        self.results = w.VBox([])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------ actions
    def make_music(self) -> MusicResult | None:
        """Music for the current photo with the current settings (nothing when there is no photo yet)."""
        if self._last is None:
            self.status.value = "First upload a photo, take one with the camera, or use the sample photo."
            return None
        return self.run(*self._last)

    def new_piece(self) -> MusicResult | None:
        """A new random seed (shown in the seed field), then :meth:`make_music`."""
        old = int(self.seed.value)
        seed = old
        while seed == old:
            seed = secrets.randbelow(100_000)
        self.seed.value = seed
        return self.make_music()

    def warm_up(self) -> None:
        """Load the models in the background so the first photo is quick (``run`` waits for it)."""
        def work() -> None:
            with contextlib.suppress(Exception):  # a failed warm-up only means the first photo loads the models
                image_to_music(SAMPLE_PHOTO, seconds=4, seed=0)

        self._warming = threading.Thread(target=work, name="emolib-warm-up", daemon=True)
        self._warming.start()

    def colab_upload(self) -> MusicResult | None:
        """Colab's own file picker (no widget message-size limit; photos up to 25 MB); runs the first file."""
        from google.colab import files

        uploaded = files.upload()
        for name, data in uploaded.items():
            return self.run(data, name)
        return None

    def run(self, data: bytes, name: str) -> MusicResult | None:
        """Make music for one photo given as bytes; show it and write .mid/.wav/.json into ``out_dir``.

        Any problem clears the previous result and shows one red line; returns None then.
        """
        data = bytes(data)
        if len(data) > UPLOAD_LIMIT:
            self._fail(f"{name} is {len(data) / 2**20:.1f} MB: photos up to {UPLOAD_LIMIT / 2**20:.0f} MB only. "
                       "Try a smaller photo.")
            return None
        self._set_busy(True, f"Working on <b>{html.escape(name)}</b>: finding the face, composing "
                             f"{float(self.seconds.value):.0f} s of music...")
        try:
            if self._warming is not None:
                self._warming.join()
            result, summary = self._compose(data, name)
            self._last = (data, name)
            self._show(result, summary)
        except EmolibError as err:
            self._fail(f"Could not use this photo: {err}")
            return None
        except BaseException:
            self._fail(f"Something went wrong with {name}: see the server log.")
            raise
        finally:
            self._set_busy(False)
        return result

    # ------------------------------------------------------------------ internals
    def _compose(self, data: bytes, name: str) -> tuple[MusicResult, dict[str, Any]]:
        seed = int(self.seed.value)
        emotion = None if self.emotion.value == AUTO else self.emotion.value
        result = image_to_music(data, name=name, seconds=float(self.seconds.value), seed=seed,
                                temperature=float(self.temperature.value), emotion=emotion,
                                blend=bool(self.blend.value))
        summary = result.save(self.out_dir, stem=_unique_stem(self.out_dir, name, seed))
        return result, summary

    def _show(self, result: MusicResult, summary: dict[str, Any]) -> None:
        from emolib import plots

        self.result = result
        self.files = {"midi": Path(summary["midi"]), "wav": Path(summary["wav"])}
        labels = [max(p.items(), key=lambda item: item[1])[0] for p in result.face_probabilities]
        if result.pixels is not None:  # always set by image_to_music
            self.photo.value = plots.png_bytes(plots.photo_with_faces(result.pixels, result.faces, labels))
        self.probabilities.value = plots.png_bytes(plots.probability_bars(result.probabilities, result.emotion))
        self.roll.value = plots.png_bytes(plots.piano_roll(result.midi, title=f"{result.music_emotion} music"))
        self.player.show(self.files["wav"].read_bytes(), self.files["midi"].read_bytes(), self.files["wav"].stem)
        self.results.children = self._result_views
        found = f"{len(result.faces)} face(s) found" if result.face_found else "no face found: used the whole image"
        chosen = ", your choice" if result.overridden else (", blended" if result.blend else "")
        where = f", saved in {html.escape(str(self.out_dir))}" if self.show_paths else ""
        self.status.value = (f"<b>{html.escape(result.emotion)}</b> face ({found}) -> <b>{result.music_emotion}</b> "
                             f"music{chosen}, {result.seconds:.0f} s, seed {result.seed}{where}")

    def _clear(self) -> None:
        """Forget the shown result: no photo, charts, player or downloads stay on screen."""
        self.result = None
        self.files = {}
        self.results.children = ()
        for image in (self.photo, self.probabilities, self.roll):
            image.value = b""
        self.player.clear()

    def _fail(self, message: str) -> None:
        """Clear everything (the failed photo becomes no photo: *Make music* waits for a new one); say why."""
        self._last = None
        self._clear()
        self._set_busy(False)
        self.status.value = f"<span class='emolib-error'>{html.escape(message)}</span>"

    def _on_problem(self, message: str, about_photo: bool) -> None:
        if about_photo:
            self._fail(message)
        else:
            self.status.value = f"<span class='emolib-error'>{html.escape(message)}</span>"

    def _set_busy(self, busy: bool, message: str = "") -> None:
        for button in (self.sample_button, self.colab_button):
            button.disabled = busy
        for button in (self.make_button, self.new_button):
            button.disabled = busy or self._last is None
        self.photo_input.busy = busy
        if busy:
            self.status.value = f"<span class='emolib-spinner'></span>{message}"


def _w():
    import ipywidgets

    return ipywidgets


def _button(label: str, tooltip: str, primary: bool = False):
    w = _w()
    return w.Button(description=label, tooltip=tooltip, button_style="primary" if primary else "",
                    layout=w.Layout(width="auto"))


def _wrap(children: list) -> Any:
    box = _w().Box(children)
    box.add_class("emolib-wrap")
    return box


def _unique_stem(out_dir: Path, name: str, seed: int) -> str:
    """``<photo>_seed<seed>``, with ``-2``, ``-3``... when such files exist already (nothing is overwritten)."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(name).stem).strip("-")[:40] or "photo"
    stem, n = f"{base}_seed{seed}", 1
    while any((out_dir / f"{stem}{ext}").exists() for ext in (".mid", ".wav", ".json")):
        n += 1
        stem = f"{base}_seed{seed}-{n}"
    return stem
