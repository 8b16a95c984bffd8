"""A photo source for the app: an *Upload photo* button and a live *camera* with *Take photo*.

``PhotoInput`` is a small anywidget (its JavaScript is the ``_ESM`` string below), so it works in
JupyterLab, Voila, VS Code and Colab (there after ``google.colab.output.enable_custom_widget_manager()``).
The browser does the heavy lifting before anything is sent: files over ``max_bytes`` are refused
with a message (never silently dropped), large photos are downscaled to ``max_side`` pixels as
JPEG, and the bytes travel in small chunks so no websocket message limit is ever reached.
A camera frame is sent as a JPEG. Python receives ``(bytes, name)`` through ``on_photo`` and
one-line problems (camera denied, file too large) through ``on_problem``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anywidget
import traitlets

__all__ = ["PhotoInput", "UPLOAD_LIMIT"]

#: The largest file accepted (bytes): larger ones get a clear message instead of music.
UPLOAD_LIMIT = 25 * 1024 * 1024
#: Bytes per message the browser sends (the ESM's CHUNK): the server checks every message against it.
CHUNK_BYTES = 512 * 1024

_ESM = r"""
const CHUNK = 512 * 1024;
const mb = (n) => (n / 1024 / 1024).toFixed(1) + " MB";

async function downscale(file, maxSide) {
  let bmp;
  try { bmp = await createImageBitmap(file); } catch (e) { return null; }  // not an image the browser reads
  const scale = Math.min(1, maxSide / Math.max(bmp.width, bmp.height));
  if (scale === 1 && file.size <= 2 * 1024 * 1024) return null;            // small enough as it is
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bmp.width * scale);
  canvas.height = Math.round(bmp.height * scale);
  canvas.getContext("2d").drawImage(bmp, 0, 0, canvas.width, canvas.height);
  const blob = await new Promise((ok) => canvas.toBlob(ok, "image/jpeg", 0.9));
  return blob ? blob.arrayBuffer() : null;
}

function button(label, cls) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "emolib-btn " + (cls || "");
  b.textContent = label;
  return b;
}

function render({ model, el }) {
  el.classList.add("emolib-photo-input");
  const row = document.createElement("div");
  row.className = "emolib-row";
  const input = document.createElement("input");
  input.type = "file";
  input.accept = "image/*";
  input.hidden = true;
  const upload = button("Upload photo", "emolib-primary");
  const camera = button("Camera");
  row.append(upload, camera, input);
  const live = document.createElement("div");
  live.className = "emolib-live";
  live.hidden = true;
  const video = document.createElement("video");
  video.autoplay = true; video.muted = true; video.playsInline = true;
  const shoot = button("Take photo", "emolib-primary");
  const stop = button("Close camera");
  const liveButtons = document.createElement("div");
  liveButtons.className = "emolib-row";
  liveButtons.append(shoot, stop);
  live.append(video, liveButtons);
  const note = document.createElement("div");
  note.className = "emolib-note";
  el.append(row, live, note);
  let stream = null;

  // problem: also tell Python; photo: the problem is about a photo (the old result is then cleared)
  // a problem shows here only when no app shows it elsewhere (show_problems), so it is said once
  const say = (text, problem, photo) => {
    const here = !problem || model.get("show_problems");
    note.textContent = here ? text || "" : "";
    note.classList.toggle("emolib-problem", !!problem && here);
    if (problem) model.send({ kind: "problem", text, photo: !!photo });
  };
  const setBusy = () => {
    for (const b of [upload, camera, shoot]) b.disabled = model.get("busy");
  };
  model.on("change:busy", setBusy);
  setBusy();

  async function send(buffer, name) {
    const id = Math.random().toString(36).slice(2);
    const total = Math.max(1, Math.ceil(buffer.byteLength / CHUNK));
    for (let i = 0; i < total; i++) {
      model.send({ kind: "chunk", id, index: i, total, name }, undefined,
                 [buffer.slice(i * CHUNK, (i + 1) * CHUNK)]);
    }
  }

  upload.onclick = () => input.click();
  input.onchange = async () => {
    const file = input.files && input.files[0];
    input.value = "";  // picking the same file again must work again
    if (!file) return;
    const limit = model.get("max_bytes");
    if (file.size > limit) {
      say(`${file.name} is ${mb(file.size)}: photos up to ${mb(limit)} only. Try a smaller photo.`, true, true);
      return;
    }
    say(`Sending ${file.name}...`);
    const small = await downscale(file, model.get("max_side"));
    await send(small || await file.arrayBuffer(), file.name);
    say("");
  };

  function close() {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    live.hidden = true;
    camera.hidden = false;
  }
  camera.onclick = async () => {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      say("This browser gives no camera here (it needs https or localhost). Use Upload photo instead.", true);
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user", width: { ideal: 1280 } },
                                                            audio: false });
    } catch (err) {
      const why = err && err.name === "NotFoundError" ? "No camera was found"
        : err && (err.name === "NotAllowedError" || err.name === "SecurityError")
          ? "The browser denied access to the camera" : `The camera could not start (${err && err.name})`;
      say(`${why}. Allow the camera in the browser's address bar, or use Upload photo instead.`, true);
      return;
    }
    video.srcObject = stream;
    live.hidden = false;
    camera.hidden = true;
    say("");
  };
  stop.onclick = close;
  shoot.onclick = async () => {
    if (!stream || !video.videoWidth) { say("The camera is not ready yet: try again in a moment."); return; }
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    const blob = await new Promise((ok) => canvas.toBlob(ok, "image/jpeg", 0.92));
    const stamp = new Date().toISOString().slice(11, 19).replace(/:/g, "");
    await send(await blob.arrayBuffer(), `camera-${stamp}.jpg`);
  };
  return close;
}
export default { render };
"""

_CSS = """
.emolib-photo-input .emolib-row { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
.emolib-photo-input .emolib-live { margin-top: 8px; }
.emolib-photo-input video { display: block; width: 100%; max-width: 480px; border-radius: 6px; background: #222; }
.emolib-photo-input .emolib-live .emolib-row { margin-top: 6px; }
.emolib-photo-input .emolib-note { margin-top: 4px; font-size: 14px; }
.emolib-photo-input .emolib-problem { color: #b00020; }
"""


class PhotoInput(anywidget.AnyWidget):
    """Upload button + live camera; sends photos to Python in chunks (see the module docstring)."""

    _esm = traitlets.Unicode(_ESM).tag(sync=True)
    _css = traitlets.Unicode(_CSS).tag(sync=True)
    max_bytes = traitlets.Int(UPLOAD_LIMIT).tag(sync=True)
    max_side = traitlets.Int(2048).tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)
    #: Show problems (camera denied, photo too large) under the buttons; False when an app shows them itself.
    show_problems = traitlets.Bool(True).tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._photo_handlers: list[Callable[[bytes, str], Any]] = []
        self._problem_handlers: list[Callable[[str, bool], Any]] = []
        self._parts: dict[str, list[bytes | None]] = {}
        self.on_msg(self._on_message)

    def on_photo(self, handler: Callable[[bytes, str], Any]) -> None:
        """Call ``handler(data, name)`` for every photo uploaded or taken."""
        self._photo_handlers.append(handler)

    def on_problem(self, handler: Callable[[str, bool], Any]) -> None:
        """Call ``handler(message, about_photo)`` when the browser reports a problem.

        ``about_photo`` is True for a refused photo (too large), False for the camera (denied, none).
        """
        self._problem_handlers.append(handler)

    def receive(self, data: bytes, name: str) -> None:
        """Hand one photo to the handlers (what a finished upload does; tests call it directly)."""
        for handler in self._photo_handlers:
            handler(data, name)

    def _on_message(self, _widget: Any, content: dict, buffers: list) -> None:
        if content.get("kind") == "problem":
            self._problem(str(content.get("text", "")), bool(content.get("photo")))
            return
        if content.get("kind") != "chunk":
            return
        self._receive_chunk(content, bytes(buffers[0]) if buffers else b"")

    def _receive_chunk(self, content: dict, data: bytes) -> None:
        """Collect one piece of an upload; the server trusts nothing the page says about sizes.

        Only one upload is assembled at a time (a new id drops an unfinished one), its pieces and
        their count must fit ``max_bytes``, and anything else is refused with the usual message.
        """
        try:
            upload, total, index = str(content["id"]), int(content["total"]), int(content["index"])
        except (KeyError, TypeError, ValueError):
            return
        most = -(-self.max_bytes // CHUNK_BYTES) + 1
        if not (0 < total <= most and 0 <= index < total and len(data) <= CHUNK_BYTES):
            self._parts.clear()
            self._problem(f"that upload is larger than {self.max_bytes / 2**20:.0f} MB", True)
            return
        parts = self._parts.get(upload)
        if parts is None or len(parts) != total:
            self._parts = {upload: [None] * total}  # one upload in flight: a new one replaces the rest
            parts = self._parts[upload]
        parts[index] = data
        if all(p is not None for p in parts):
            del self._parts[upload]
            self.receive(b"".join(p for p in parts if p is not None), str(content.get("name") or "photo"))

    def _problem(self, text: str, about_photo: bool) -> None:
        for handler in self._problem_handlers:
            handler(text, about_photo)
