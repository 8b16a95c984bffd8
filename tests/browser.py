"""Shared helpers for driving `emolib app` in headless Chromium (tests and the visitors benchmark)."""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from emolib.paths import REPO_ROOT
from emolib.pipeline import SAMPLE_PHOTO

CHROMIUM = Path(os.environ.get("EMOLIB_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("EMOLIB_ARTIFACTS", REPO_ROOT / "tests" / "artifacts"))


def missing() -> str | None:
    """Why browser tests cannot run here (None when they can)."""
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (make test installs Debian's chromium; or set EMOLIB_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(out: Path, port: int | None = None, pool: int = 2, log: Path | None = None,
              timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """Start `emolib app` as a subprocess; return it and its URL once the page answers."""
    port = port or free_port()
    with open(log or out.parent / "emolib_app.log", "wb") as log_file:  # the child keeps its own handle
        proc = subprocess.Popen([sys.executable, "-m", "emolib", "app", "--port", str(port), "--out", str(out),
                                 "--pool", str(pool), "--cull-minutes", "5"],
                                stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"emolib app exited with {proc.returncode}: see {log_file.name}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return proc, url
        except OSError:
            time.sleep(0.5)
    stop_app(proc)
    raise RuntimeError(f"emolib app did not answer within {timeout:.0f} s: see {log_file.name}")


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def is_external(url: str) -> bool:
    """A request that leaves this machine (anything but 127.0.0.1/localhost, data: and blob:)."""
    parsed = urlparse(url)
    if parsed.scheme in ("data", "blob", "about"):
        return False
    return parsed.hostname not in ("127.0.0.1", "localhost")


def image_side(path: Path) -> int:
    """The longer side of an image file, in pixels."""
    from PIL import Image

    with Image.open(path) as img:
        return max(img.size)


def noisy_photo(min_bytes: int = 19_000_000) -> bytes:
    """A big phone-like JPEG: the sample portrait upscaled with noise until it is at least ``min_bytes``."""
    from PIL import Image

    base = Image.open(SAMPLE_PHOTO).convert("RGB")
    rng = np.random.default_rng(0)
    side = 3000
    while True:
        pixels = np.asarray(base.resize((side, side)), dtype=np.int16)
        pixels = np.clip(pixels + rng.normal(0, 40, pixels.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "JPEG", quality=98)
        if buf.tell() >= min_bytes:
            return buf.getvalue()
        side = int(side * (min_bytes / buf.tell()) ** 0.5 * 1.05) + 16


def face_video(path: Path, frames: int = 25) -> Path:
    """A Y4M video (the format Chromium's fake camera reads) showing the sample portrait."""
    from PIL import Image

    width, height = 640, 480
    frame = Image.new("RGB", (width, height), (40, 40, 40))
    frame.paste(Image.open(SAMPLE_PHOTO).convert("RGB").resize((height, height)), ((width - height) // 2, 0))
    rgb = np.asarray(frame, dtype=np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    u = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    v = 0.5 * r - 0.418688 * g - 0.081312 * b + 128

    def half(plane: np.ndarray) -> np.ndarray:
        return plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))

    planes = b"".join(np.clip(p, 0, 255).round().astype(np.uint8).tobytes() for p in (y, half(u), half(v)))
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + planes)
    return path


#: JavaScript: resolves when an <audio> with a finite duration other than ``prev`` src is on the page.
AUDIO_READY = """prev => { const a = document.querySelector('audio');
  return !!a && a.src && a.src !== prev && isFinite(a.duration) && a.duration > 0; }"""


def wait_for_audio(page, previous_src: str | None = None, timeout_ms: int = 120_000) -> dict:
    """Wait for new music on the page; return its audio src and duration."""
    page.wait_for_function(AUDIO_READY, arg=previous_src or "", timeout=timeout_ms, polling=250)
    return page.locator("audio").evaluate("a => ({src: a.src, duration: a.duration})")
