"""The notebook app: upload a photo (or use the sample), hear the music its emotion makes.

``MusicApp().widget`` is an ipywidgets box usable in Jupyter, VS Code and Colab. Everything it
shows is a widget value (PNG images, a WAV player, HTML links), so callbacks can be driven and
checked in code: ``app.run(data, name)`` is what the upload and button callbacks call.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

from emolib import MUSIC_EMOTIONS
from emolib.errors import EmolibError
from emolib.pipeline import SAMPLE_PHOTO, MusicResult, image_to_music

#: ipywidgets' FileUpload cannot take files >= 1 MB in Colab (its message size limit).
COLAB_UPLOAD_LIMIT = 1_000_000


class MusicApp:
    """Photo -> emotion -> music with upload, sample photo, controls, plots, player and downloads."""

    def __init__(self, out_dir: str | Path = "emolib_out", *, seconds: float = 40.0, temperature: float = 1.0,
                 seed: int = 0):
        import ipywidgets as w

        from emolib.paths import in_colab

        self.out_dir = Path(out_dir)
        self.result: MusicResult | None = None
        self.files: dict[str, Path] = {}
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="Upload photo")
        self.sample_button = w.Button(description="Use sample photo", icon="user")
        self.colab_button = w.Button(description="Upload (Colab, any size)", icon="upload",
                                     layout=w.Layout(display=None if in_colab() else "none"))
        self.seconds = w.FloatSlider(value=seconds, min=10, max=90, step=5, description="seconds")
        self.temperature = w.FloatSlider(value=temperature, min=0.2, max=2.0, step=0.1, description="temperature")
        self.seed = w.IntText(value=seed, description="seed")
        self.emotion = w.Dropdown(options=[("as recognised", None)] + [(e, e) for e in MUSIC_EMOTIONS],
                                  value=None, description="music")
        self.blend = w.Checkbox(value=False, description="blend emotions", indent=False)
        self.status = w.HTML("Upload a photo of a face, or use the sample photo.")
        self.photo = w.Image(format="png", layout=w.Layout(max_width="360px"))
        self.probabilities = w.Image(format="png", layout=w.Layout(max_width="360px"))
        self.roll = w.Image(format="png", layout=w.Layout(max_width="720px"))
        self.player = w.Audio(format="wav", autoplay=False, loop=False)
        self.links = w.HTML()
        self._last: tuple[bytes, str] | None = None
        self.again_button = w.Button(description="New piece, same photo", icon="refresh")

        self.upload.observe(self._on_upload, names="value")
        self.sample_button.on_click(lambda _: self.run(SAMPLE_PHOTO.read_bytes(), SAMPLE_PHOTO.name))
        self.colab_button.on_click(lambda _: self.colab_upload())
        self.again_button.on_click(lambda _: self._last and self.run(*self._last))
        controls = w.HBox([self.upload, self.colab_button, self.sample_button, self.again_button])
        knobs = w.HBox([self.seconds, self.temperature, self.seed, self.emotion, self.blend])
        self.widget = w.VBox([controls, knobs, self.status, w.HBox([self.photo, self.probabilities]),
                              self.roll, self.player, self.links])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _on_upload(self, change) -> None:
        for item in change["new"] or ():
            self.run(bytes(item["content"]), item["name"])

    def colab_upload(self) -> MusicResult | None:
        """Colab's own file picker (no 1 MB limit); runs the app on the first file chosen."""
        from google.colab import files

        uploaded = files.upload()
        for name, data in uploaded.items():
            return self.run(data, name)
        return None

    def run(self, data: bytes, name: str) -> MusicResult | None:
        """Make music for one photo given as bytes; show it and write .mid/.wav/.json to ``out_dir``."""
        from emolib import plots

        self._last = (data, name)
        self.status.value = f"Listening to the face in <b>{html.escape(name)}</b>..."
        try:
            seed = int(self.seed.value)
            result = image_to_music(data, name=name, seconds=float(self.seconds.value), seed=seed,
                                    temperature=float(self.temperature.value), emotion=self.emotion.value,
                                    blend=bool(self.blend.value))
            summary = result.save(self.out_dir, stem=f"{Path(name).stem}_{seed}")
        except EmolibError as err:
            self.result = None
            self.status.value = f"<span style='color:#b00'>Could not use this photo: {html.escape(str(err))}</span>"
            return None
        self.result = result
        self.files = {"midi": Path(summary["midi"]), "wav": Path(summary["wav"])}
        labels = [max(p, key=p.get) for p in result.face_probabilities]
        self.photo.value = plots.png_bytes(plots.photo_with_faces(result.pixels, result.faces, labels))
        self.probabilities.value = plots.png_bytes(plots.probability_bars(result.probabilities, result.emotion))
        self.roll.value = plots.png_bytes(plots.piano_roll(result.midi, title=f"{result.music_emotion} music"))
        self.player.value = self.files["wav"].read_bytes()
        self.links.value = " | ".join(_download_link(path, label) for label, path in
                                      (("download MIDI", self.files["midi"]), ("download WAV", self.files["wav"])))
        found = f"{len(result.faces)} face(s) found" if result.face_found else "no face found: used the whole image"
        chosen = ", your choice" if result.overridden else (", blended" if result.blend else "")
        self.status.value = (f"<b>{html.escape(result.emotion)}</b> face ({found}) -> <b>{result.music_emotion}</b> "
                             f"music{chosen}, {result.seconds:.0f} s, saved in {html.escape(str(self.out_dir))}")
        return result


def _download_link(path: Path, label: str) -> str:
    """An HTML link carrying the file itself (works in Jupyter, VS Code and Colab alike)."""
    mime = "audio/midi" if path.suffix == ".mid" else "audio/wav"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<a download="{html.escape(path.name)}" href="data:{mime};base64,{data}">{label} ({path.name})</a>'
