"""Photos in, 48x48 grayscale face crops out: image loading and validation, face detection, cropping.

Every image the emotion model sees, in training and in prediction, goes through
:func:`prepare_crop`, so a face found in a student's photo is converted exactly like the
FER2013 faces the model learned from. Faces are found with OpenCV's Haar cascade (shipped in
opencv-python-headless < 5: nothing is downloaded); when none is found the whole image
(center square) is used instead and the result says so (``found=False``), never silently.
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emolib.errors import EmolibError

__all__ = ["IMAGE_SUFFIXES", "INPUT_SIZE", "MAX_PIXELS", "FACE_MARGIN", "DETECT_MAX_SIDE", "MIN_FACE",
           "DETECT_MAX_SIDE_SMALL_FACES", "ImageSource", "Face", "load_image", "to_gray", "prepare_crop",
           "decode_face", "detect_boxes", "crop_face", "center_box", "find_faces"]

#: Image file suffixes (lower case) read from dataset folders and zips, and counted by retraining.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
#: Side of the square grayscale crop the emotion model takes (FER2013's size).
INPUT_SIZE = 48
#: Larger images are refused as probable decompression bombs.
MAX_PIXELS = 50_000_000
#: Extra room around the detected box, as a fraction of its side on each side. The Haar box
#: spans brows to mouth; FER2013 faces are framed forehead to chin, a little looser.
FACE_MARGIN = 0.15
#: Faces are searched on a copy whose longer side is at most this many pixels (speed: the cascade
#: costs grow with the pixel count); faces smaller than MIN_FACE of the shorter side are ignored.
DETECT_MAX_SIDE = 400
MIN_FACE = 0.07
#: Only when that finds nothing (a group photo, a face far from the camera): a second, slower search on a
#: copy up to this size, for faces down to a third of MIN_FACE.
DETECT_MAX_SIDE_SMALL_FACES = 1200

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | np.ndarray | Any


@dataclass
class Face:
    """One face of a photo: where it is and the model-ready crop.

    ``box`` is (x, y, w, h) in the original (EXIF-rotated) image. ``crop`` is the (48, 48)
    uint8 grayscale input of the emotion model. ``found`` is False for the fallback that uses
    the whole image's center square because no face was detected.
    """

    box: tuple[int, int, int, int]
    crop: np.ndarray = field(repr=False)
    found: bool = True


# --------------------------------------------------------------------------- loading
def load_image(src: ImageSource, name: str | None = None) -> np.ndarray:
    """Load a photo as an (H, W, 3) uint8 RGB array.

    ``src`` is a path, the file's bytes, a PIL image or a numpy array (gray, RGB, RGBA;
    uint8, uint16, bool or float in [0, 1]). JPEG, PNG, WebP, BMP (whatever Pillow reads) in
    any mode: grayscale, RGB, RGBA and palette (transparency composited on white), 16-bit.
    EXIF orientation is applied. Every bad input raises :class:`EmolibError` naming the file
    (or ``name``): missing, empty, not an image, truncated, zero-size, over 50 megapixels.
    """
    from PIL import Image

    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        label = name or str(path)
        if not path.exists():
            raise EmolibError("file not found", label)
        if not path.is_file():
            raise EmolibError("not a file (a folder?)", label)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise EmolibError(f"cannot read the file ({err.strerror or err})", label) from None
        return _decode(data, label)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return _decode(bytes(src), name or "<bytes>")
    if isinstance(src, np.ndarray):
        return _from_array(src, name or "<array>")
    if isinstance(src, Image.Image):
        label = name or getattr(src, "filename", None) or "<PIL image>"
        return _from_pil(src, label)
    raise EmolibError(f"cannot load an image from a {type(src).__name__}: "
                      "give a path, bytes, a PIL image or a numpy array", name)


def _decode(data: bytes, label: str) -> np.ndarray:
    """Bytes of an image file -> RGB array, with every failure named."""
    from PIL import Image, UnidentifiedImageError

    if len(data) == 0:
        raise EmolibError("empty file (0 bytes), not an image", label)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise EmolibError(f"image is over the {MAX_PIXELS // 1_000_000}-megapixel limit (a decompression bomb?)",
                          label) from None
    except UnidentifiedImageError:
        raise EmolibError("not an image (or a format Pillow cannot read: use JPEG, PNG, WebP or BMP)", label) from None
    except (OSError, ValueError, SyntaxError) as err:
        raise EmolibError(f"not a readable image ({err})", label) from None
    return _from_pil(img, label)


def _from_pil(img: Any, label: str) -> np.ndarray:
    """A PIL image -> RGB uint8 array: size checks, full decode, EXIF rotation, mode handling."""
    from PIL import Image, ImageOps

    w, h = img.size
    if w <= 0 or h <= 0:
        raise EmolibError(f"zero-size image ({w}x{h})", label)
    if w * h > MAX_PIXELS:
        raise EmolibError(f"image is {w}x{h} = {w * h / 1e6:.0f} megapixels, "
                          f"over the {MAX_PIXELS // 1_000_000}-megapixel limit (a decompression bomb?)", label)
    try:
        img.load()
    except (OSError, ValueError, SyntaxError) as err:
        msg = str(err)
        kind = "truncated image file" if "truncat" in msg.lower() else "corrupt image file"
        raise EmolibError(f"{kind} ({msg})", label) from None
    with contextlib.suppress(Exception):  # a broken EXIF block must not cost the whole photo
        img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _from_array(np.asarray(img), label, sixteen_bit=mode != "F")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if mode in ("LA", "PA"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(arr)


def _from_array(arr: np.ndarray, label: str, sixteen_bit: bool = False) -> np.ndarray:
    """A numpy image (gray/RGB/RGBA, uint8/uint16/float/bool) -> RGB uint8."""
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        pass
    elif arr.ndim != 2:
        raise EmolibError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4), not {arr.shape}", label)
    if arr.size == 0 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise EmolibError(f"zero-size image ({arr.shape[1] if arr.ndim > 1 else 0}x{arr.shape[0]})", label)
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise EmolibError(f"image is {arr.shape[1]}x{arr.shape[0]}, over the {MAX_PIXELS // 1_000_000}-megapixel limit",
                          label)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint8:
        pass
    elif np.issubdtype(arr.dtype, np.integer):
        top = 65535.0 if (sixteen_bit or arr.dtype in (np.uint16, np.int16) or arr.max(initial=0) > 255) else 255.0
        arr = np.clip(np.rint(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise EmolibError("image array holds NaN or infinite values", label)
        scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 1.0
        arr = np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
    else:
        raise EmolibError(f"unsupported image array dtype {arr.dtype}", label)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        arr = np.rint(arr[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(arr)


# --------------------------------------------------------------------------- model input
def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB (or already gray) uint8 -> 2-D uint8 grayscale (ITU-R 601 luma, as OpenCV)."""
    import cv2

    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def prepare_crop(image: np.ndarray) -> np.ndarray:
    """Any face image -> the model's (48, 48) uint8 grayscale input.

    The one conversion shared by training (dataset faces, already cropped) and prediction
    (detected faces): grayscale, then resize to 48x48 (area averaging when shrinking).
    """
    import cv2

    gray = to_gray(image)
    if gray.dtype != np.uint8:
        gray = _from_array(gray, "<crop>")[:, :, 0]
    if gray.shape == (INPUT_SIZE, INPUT_SIZE):
        return np.ascontiguousarray(gray)
    shrink = gray.shape[0] > INPUT_SIZE or gray.shape[1] > INPUT_SIZE
    return cv2.resize(gray, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def decode_face(data: bytes, name: str) -> np.ndarray:
    """The bytes of a dataset face image (already cropped) -> its (48, 48) uint8 model input."""
    return prepare_crop(load_image(data, name))


# --------------------------------------------------------------------------- detection
@functools.cache
def _cascade(filename: str):
    import cv2

    path = Path(cv2.data.haarcascades) / filename  # type: ignore[attr-defined]  # cv2's stubs omit cv2.data
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise EmolibError("OpenCV's Haar cascade could not be loaded (opencv-python-headless < 5 ships it)", path)
    return cascade


def detect_boxes(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h) in a grayscale image, largest first; empty when none.

    Searches a small copy first (fast, faces of at least MIN_FACE); if that finds nothing in a large
    photo, a bigger copy for faces down to a third of that size, with local contrast equalisation
    (a global one flattens a face that covers a small part of the picture).
    """
    boxes = _detect_at(gray, DETECT_MAX_SIDE, MIN_FACE)
    if not boxes and max(gray.shape) > DETECT_MAX_SIDE:
        boxes = _detect_at(gray, DETECT_MAX_SIDE_SMALL_FACES, MIN_FACE / 3, local_contrast=True)
    h, w = gray.shape
    boxes = [(x, y, min(bw, w - x), min(bh, h - y)) for x, y, bw, bh in boxes]
    return sorted(boxes, key=lambda b: (-b[2] * b[3], b[0], b[1]))


def _detect_at(gray: np.ndarray, max_side: int, min_face: float,
               local_contrast: bool = False) -> list[tuple[int, int, int, int]]:
    """Haar cascade boxes on a copy at most ``max_side`` long, in ``gray``'s coordinates."""
    import cv2

    h, w = gray.shape
    scale = min(1.0, max_side / max(h, w))
    small = gray if scale == 1.0 else cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                 interpolation=cv2.INTER_AREA)
    small = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(small) if local_contrast \
        else cv2.equalizeHist(small)
    min_side = max(20, int(min(small.shape) * min_face))
    for name in ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml"):
        found = _cascade(name).detectMultiScale(small, scaleFactor=1.15, minNeighbors=5, minSize=(min_side, min_side))
        if len(found):
            return [(int(round(x / scale)), int(round(y / scale)), int(round(bw / scale)), int(round(bh / scale)))
                    for x, y, bw, bh in found]
    return []


def crop_face(gray: np.ndarray, box: tuple[int, int, int, int], margin: float = FACE_MARGIN) -> np.ndarray:
    """Cut the square around ``box`` widened by ``margin`` (edges replicated past the border) -> 48x48."""
    import cv2

    x, y, w, h = box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x1, y1 = x0 + int(round(side)), y0 + int(round(side))
    H, W = gray.shape
    pad = max(0, -x0, -y0, x1 - W, y1 - H)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    return prepare_crop(gray[y0:y1, x0:x1])


def center_box(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The largest centered square (x, y, w, h) of an image of ``shape``: the no-face fallback."""
    h, w = shape[:2]
    side = min(h, w)
    return ((w - side) // 2, (h - side) // 2, side, side)


def find_faces(image: ImageSource, name: str | None = None) -> list[Face]:
    """Every face of a photo with its 48x48 crop, largest first; never empty.

    ``image`` is anything :func:`load_image` takes (usually its RGB array). When no face is
    detected the list holds one ``Face(found=False)`` made from the image's center square.
    """
    rgb = image if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 \
        and image.dtype == np.uint8 else load_image(image, name)
    gray = to_gray(rgb)
    faces = [Face(box=box, crop=crop_face(gray, box), found=True) for box in detect_boxes(gray)]
    if not faces:
        box = center_box(gray.shape)
        x, y, w, h = box
        faces = [Face(box=box, crop=prepare_crop(gray[y:y + h, x:x + w]), found=False)]
    return faces
