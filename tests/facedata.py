"""Synthetic test data for the face tests: drawn faces for the Haar cascade, patterned 'emotion' datasets."""
from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def draw_face(size: int = 400, cx: int = 200, cy: int = 210, scale: float = 1.0, background: int = 90) -> np.ndarray:
    """An (size, size, 3) uint8 RGB image with a drawn frontal face the Haar cascade detects."""
    import cv2

    img = np.full((size, size, 3), background, np.uint8)

    def at(x: float, y: float) -> tuple[int, int]:
        return int(cx + x * scale), int(cy + y * scale)

    def ax(a: float, b: float) -> tuple[int, int]:
        return int(a * scale), int(b * scale)

    cv2.ellipse(img, at(0, 0), ax(95, 125), 0, 0, 360, (205, 205, 205), -1)
    for dx in (-40, 40):
        cv2.ellipse(img, at(dx, -35), ax(22, 7), 0, 0, 360, (60, 60, 60), -1)
        cv2.ellipse(img, at(dx, -20), ax(16, 9), 0, 0, 360, (40, 40, 40), -1)
    cv2.ellipse(img, at(0, 15), ax(8, 25), 0, 0, 360, (225, 225, 225), -1)
    cv2.ellipse(img, at(0, 60), ax(35, 10), 0, 0, 360, (70, 70, 70), -1)
    return cv2.GaussianBlur(img, (0, 0), 3 * scale)


def pattern(label: int, rng: np.random.Generator) -> np.ndarray:
    """A 48x48 uint8 image whose pattern encodes ``label`` (0: horizontal bars, 1: vertical bars,
    2: bright disk, 3: dark disk), with random phase, contrast and noise."""
    yy, xx = np.mgrid[0:48, 0:48].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    kind = label % 4
    if kind == 0:
        img = np.sin(yy / 48 * 2 * np.pi * 4 + phase)
    elif kind == 1:
        img = np.sin(xx / 48 * 2 * np.pi * 4 + phase)
    else:
        r = np.hypot(yy - 24 - rng.uniform(-3, 3), xx - 24 - rng.uniform(-3, 3))
        img = np.where(r < rng.uniform(10, 14), 1.0, -1.0) * (1 if kind == 2 else -1)
    img = 128 + img * rng.uniform(50, 90) + rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def make_face_tree(root: Path, classes: Sequence[str], n_train: int, n_test: int, seed: int = 0,
                   as_zips: bool = False) -> Path:
    """Write ``train/<class>/*.jpg`` and ``test/<class>/*.jpg`` (or FER-style ``<class>.zip``) under ``root``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for label, cls in enumerate(classes):
        files = {f"{split}/{cls}/{split}_{i:04d}.jpg": _jpeg(pattern(label, rng))
                 for split, n in (("train", n_train), ("test", n_test)) for i in range(n)}
        if as_zips:
            with zipfile.ZipFile(root / f"{cls}.zip", "w") as zf:
                for name, data in files.items():
                    zf.writestr(name, data)
        else:
            for name, data in files.items():
                path = root / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
    return root
