"""The app's result player: an audio player and *Download MIDI* / *Download WAV* buttons in one widget.

``MusicPlayer`` is a small anywidget (JupyterLab, Voila, VS Code, Colab with the custom widget
manager). The WAV and MIDI bytes travel to the browser once, as binary; the browser makes one
object URL per file and uses it for both the player and the download button. (An ``ipywidgets.Audio``
player beside base64 ``data:`` download links sent every WAV twice, the second time a third larger.)
"""
from __future__ import annotations

import anywidget
import traitlets

__all__ = ["MusicPlayer"]

_ESM = r"""
function render({ model, el }) {
  el.classList.add("emolib-player");
  const audio = document.createElement("audio");
  audio.controls = true;
  const row = document.createElement("div");
  row.className = "emolib-row";
  const link = (label) => { const a = document.createElement("a"); a.className = "emolib-download";
                            a.textContent = label; row.append(a); return a; };
  const midiLink = link("Download MIDI"), wavLink = link("Download WAV");
  el.append(audio, row);
  let urls = [];
  const show = () => {
    for (const u of urls) URL.revokeObjectURL(u);
    urls = [];
    const wav = model.get("wav"), midi = model.get("midi"), stem = model.get("stem") || "music";
    el.hidden = !(wav && wav.byteLength);
    if (el.hidden) {
      audio.pause();
      audio.removeAttribute("src");
      audio.load();
      return;
    }
    const url = (bytes, type) => {
      const u = URL.createObjectURL(new Blob([bytes], { type }));
      urls.push(u);
      return u;
    };
    audio.src = wavLink.href = url(wav, "audio/wav");
    midiLink.href = url(midi, "audio/midi");
    wavLink.download = wavLink.title = `${stem}.wav`;
    midiLink.download = midiLink.title = `${stem}.mid`;
  };
  model.on("change", show);  // once per update, whichever of wav, midi and stem changed
  show();
  return () => { for (const u of urls) URL.revokeObjectURL(u); };
}
export default { render };
"""

_CSS = """
.emolib-player audio { display: block; width: 100%; max-width: 520px; }
.emolib-player .emolib-row { display: flex; flex-wrap: wrap; margin-top: 4px; }
.emolib-download { display: inline-block; margin: 4px 10px 4px 0; padding: 7px 16px; border-radius: 4px;
  background: #1976d2; color: #fff !important; text-decoration: none !important; font-weight: 600; }
.emolib-download:hover { background: #115293; }
"""


class MusicPlayer(anywidget.AnyWidget):
    """Plays a result's WAV and offers its MIDI and WAV as downloads named ``<stem>.mid`` / ``<stem>.wav``."""

    _esm = traitlets.Unicode(_ESM).tag(sync=True)
    _css = traitlets.Unicode(_CSS).tag(sync=True)
    wav = traitlets.Bytes(b"").tag(sync=True)
    midi = traitlets.Bytes(b"").tag(sync=True)
    stem = traitlets.Unicode("").tag(sync=True)

    def show(self, wav: bytes, midi: bytes, stem: str) -> None:
        """Put a new result in the player (one message to the browser)."""
        with self.hold_sync():
            self.stem, self.midi, self.wav = stem, midi, wav

    def clear(self) -> None:
        """Empty the player (nothing to play or download)."""
        self.show(b"", b"", "")
