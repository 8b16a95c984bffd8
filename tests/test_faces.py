"""emolib.faces: loading every kind of image, every bad input's named error, face finding and cropping."""
from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from emolib import EmolibError, faces
from emolib.paths import ASSETS_DIR
from tests.facedata import draw_face

SAMPLE = ASSETS_DIR / "astronaut.jpg"


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _two_tone() -> Image.Image:
    """20x10 RGB: left half red, right half blue."""
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = (255, 0, 0)
    arr[:, 10:] = (0, 0, 255)
    return Image.fromarray(arr)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
def test_formats_load_as_rgb_uint8(tmp_path, fmt):
    path = tmp_path / f"photo.{fmt.lower()}"
    path.write_bytes(_encode(_two_tone(), fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {})))
    img = faces.load_image(path)
    assert img.shape == (10, 20, 3) and img.dtype == np.uint8
    assert img[5, 2, 0] > 200 and img[5, 2, 2] < 60      # red stays left
    assert img[5, 17, 2] > 200 and img[5, 17, 0] < 60    # blue stays right


def test_every_source_kind_gives_the_same_pixels(tmp_path):
    data = _encode(_two_tone(), "PNG")
    path = tmp_path / "p.png"
    path.write_bytes(data)
    ref = faces.load_image(path)
    assert np.array_equal(faces.load_image(str(path)), ref)
    assert np.array_equal(faces.load_image(data), ref)
    assert np.array_equal(faces.load_image(Image.open(io.BytesIO(data))), ref)
    assert np.array_equal(faces.load_image(np.asarray(_two_tone())), ref)


def test_modes_grayscale_rgba_palette_16bit():
    gray = faces.load_image(_encode(Image.new("L", (8, 6), 77), "PNG"))
    assert gray.shape == (6, 8, 3) and np.all(gray == 77)
    rgba = Image.new("RGBA", (8, 6), (0, 0, 0, 0))
    rgba.paste((10, 20, 30, 255), (0, 0, 4, 6))
    out = faces.load_image(_encode(rgba, "PNG"))
    assert tuple(out[0, 0]) == (10, 20, 30) and tuple(out[0, 7]) == (255, 255, 255)  # transparent -> white
    pal = Image.new("P", (8, 6), 1)
    pal.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    assert tuple(faces.load_image(_encode(pal, "PNG"))[3, 3]) == (200, 100, 50)
    sixteen = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    out16 = faces.load_image(_encode(sixteen, "PNG"))
    assert out16[0, :, 0].tolist() == [0, 128, 255]     # scaled, not clipped
    assert faces.load_image(np.array([[0.0, 0.5, 1.0]]))[0, :, 0].tolist() == [0, 128, 255]
    assert faces.load_image(np.full((4, 4, 4), 255, np.uint8)).shape == (4, 4, 3)


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    img = faces.load_image(_encode(_two_tone(), "JPEG", exif=exif, quality=95))
    assert img.shape == (20, 10, 3)                       # width and height swap
    assert img[2, 5, 0] > 200 and img[17, 5, 2] > 200     # red (was left) on top, blue below


def _huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (decoding would need gigabytes)."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("case, expected", [
    ("not_image", "not an image"),
    ("truncated", "truncated"),
    ("empty", "empty file"),
    ("bomb", "megapixel"),
    ("huge_bomb", "megapixel"),
    ("missing", "not found"),
])
def test_bad_files_raise_a_clear_error_naming_the_file(tmp_path, case, expected):
    path = tmp_path / f"{case}.jpg"
    if case == "not_image":
        path.write_text("this is a text file, not a photo\n" * 10)
    elif case == "truncated":
        path.write_bytes(_encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)),
                                 "JPEG", quality=95)[:3000])
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "bomb":
        path.write_bytes(_huge_png_header(8000, 7000))      # 56 MP: over our 50 MP limit
    elif case == "huge_bomb":
        path.write_bytes(_huge_png_header(30000, 30000))    # 900 MP: Pillow's own bomb check fires first
    with pytest.raises(EmolibError) as info:
        faces.load_image(path)
    assert str(path) in str(info.value) and info.value.path == str(path)
    assert expected in str(info.value)


def test_bad_bytes_and_arrays_use_the_given_name():
    with pytest.raises(EmolibError, match=r"^upload\.png: empty file"):
        faces.load_image(b"", name="upload.png")
    with pytest.raises(EmolibError, match="zero-size"):
        faces.load_image(np.zeros((0, 0, 3), np.uint8), name="arr")
    with pytest.raises(EmolibError, match="zero-size"):
        faces.load_image(Image.new("RGB", (0, 0)), name="pil")
    with pytest.raises(EmolibError, match="cannot load an image from a int"):
        faces.load_image(42)


def test_finds_a_drawn_face_and_crops_it_like_training_data():
    img = draw_face(size=400, cx=200, cy=210)
    found = faces.find_faces(img)
    assert len(found) == 1 and found[0].found
    x, y, w, h = found[0].box
    assert abs(x + w / 2 - 200) < 25 and abs(y + h / 2 - 210) < 30 and 150 < w < 320
    crop = found[0].crop
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    # The crop is the face: bright skin in the middle, darker eyes above the centre line.
    assert crop[20:32, 18:30].mean() > crop[14:20, 8:20].mean()


def test_largest_face_first():
    canvas = np.full((420, 800, 3), 90, np.uint8)
    canvas[:, :400] = draw_face(size=420, cx=200, cy=210, scale=0.5)[:, :400]
    canvas[:, 400:] = draw_face(size=420, cx=200, cy=210, scale=1.0)[:, :400]
    found = faces.find_faces(canvas)
    assert len(found) == 2 and all(f.found for f in found)
    assert found[0].box[2] > found[1].box[2] and found[0].box[0] >= 400


def test_a_small_face_in_a_large_photo_is_found_by_the_second_search():
    # The demo portrait (face about 100 px of 512) shrunk into a 3000x3000 scene: a face 5% of the picture.
    canvas = np.full((3000, 3000, 3), 120, np.uint8)
    canvas[1000:1800, 1500:2300] = cv2.resize(faces.load_image(SAMPLE), (800, 800), interpolation=cv2.INTER_AREA)
    gray = faces.to_gray(canvas)
    assert faces._detect_at(gray, faces.DETECT_MAX_SIDE, faces.MIN_FACE) == []  # too small for the fast search
    found = faces.find_faces(canvas)
    assert len(found) == 1 and found[0].found
    x, y, w, _h = found[0].box
    assert 1500 + 174 * 800 / 512 - 40 < x < 1500 + 174 * 800 / 512 + 40 and 1000 + 64 * 800 / 512 - 40 < y < 1200
    assert 120 < w < 200


def test_no_face_falls_back_to_center_square_and_says_so():
    img = np.zeros((100, 160, 3), np.uint8)
    img[:, 30:130] = 200
    found = faces.find_faces(img)
    assert len(found) == 1 and found[0].found is False
    assert found[0].box == (30, 0, 100, 100)
    assert np.all(found[0].crop == 200)


def test_prepare_crop_is_identity_on_dataset_faces_and_resizes_others():
    face = np.random.default_rng(1).integers(0, 255, (48, 48), np.uint8)
    assert np.array_equal(faces.prepare_crop(face), face)
    assert np.array_equal(faces.prepare_crop(np.repeat(face[:, :, None], 3, axis=2)), face)
    assert faces.prepare_crop(np.zeros((300, 200, 3), np.uint8)).shape == (48, 48)
    assert np.array_equal(faces.decode_face(_encode(Image.fromarray(face), "PNG"), "f.png"), face)
