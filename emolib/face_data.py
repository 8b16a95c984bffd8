"""Face datasets: FER2013 per-class zips or image-folder trees, splits, class weights, tf.data augmentation.

Everything here feeds training and evaluation of the face CNN (:mod:`emolib.face_train`,
:mod:`emolib.face_model`). TensorFlow is imported only inside :func:`make_train_dataset`.
"""
from __future__ import annotations

import functools
import math
import os
import sys
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emolib import FACE_CLASSES, FER_CLASSES
from emolib.errors import EmolibError
from emolib.faces import IMAGE_SUFFIXES, INPUT_SIZE, decode_face  # the one image-suffix list
from emolib.paths import data_root

__all__ = [
    "AUGMENT_DEFAULTS",
    "IMAGE_SUFFIXES",
    "FaceSet",
    "check_classes",
    "class_weights",
    "is_zip_tree",
    "load_faces",
    "make_train_dataset",
    "progress_bar",
    "stratified_split",
]

#: Default augmentation ranges (flip always; rotation in degrees, the rest as fractions).
AUGMENT_DEFAULTS = dict(rotation_deg=10.0, shift=0.08, zoom=0.1, brightness=0.15, contrast=0.25)


@dataclass
class FaceSet:
    """Dataset faces in memory: (N, 48, 48) uint8 crops, integer labels, and where each came from."""

    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    names: list[str] = field(default_factory=list)
    #: Files that could not be read (only when loaded with ``strict=False``), with the reason.
    skipped: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Images per class."""
        return {c: int((self.y == i).sum()) for i, c in enumerate(self.classes)}

    def subset(self, idx: np.ndarray) -> FaceSet:
        """The faces at ``idx``."""
        return FaceSet(self.x[idx], self.y[idx], self.classes, [self.names[i] for i in idx] if self.names else [])

    def __len__(self) -> int:
        return len(self.y)


def check_classes(classes: Sequence[str] | None, minimum: int = 2) -> tuple[str, ...]:
    """``classes`` (None: the default four) as a tuple, after checking they are distinct FER2013 classes."""
    classes = tuple(FACE_CLASSES if classes is None else classes)
    bad = [c for c in classes if c not in FER_CLASSES]
    if bad:
        raise EmolibError(f"unknown class(es) {bad}: choose from {list(FER_CLASSES)}")
    if len(classes) < minimum or len(set(classes)) != len(classes):
        raise EmolibError(f"need at least {minimum} distinct class{'es' if minimum > 1 else ''}, got {list(classes)}")
    return classes


def is_zip_tree(root: Path, classes: Iterable[str]) -> bool:
    """Whether ``root`` holds FER2013-style ``<class>.zip`` files."""
    return any((root / f"{c}.zip").is_file() for c in classes)


def _class_sources(root: Path, split: str | None, cls: str) -> list[tuple[str, Callable[[], bytes]]]:
    """(name, read) pairs of one class's images: from ``root/<cls>.zip`` or a folder."""
    zpath = root / f"{cls}.zip"
    if zpath.is_file():
        try:
            zf = zipfile.ZipFile(zpath)
        except zipfile.BadZipFile:
            raise EmolibError("not a valid zip file", zpath) from None
        prefix = f"{split}/{cls}/" if split else None
        members = [m for m in zf.namelist() if m.lower().endswith(IMAGE_SUFFIXES)
                   and (prefix is None or m.startswith(prefix) or f"/{prefix}" in m)]
        return [(f"{zpath}:{m}", functools.partial(zf.read, m)) for m in sorted(members)]
    folder = (root / split / cls) if split else (root / cls)
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return [(str(p), p.read_bytes) for p in files]


def load_faces(data: str | os.PathLike | None, split: str | None = "train", classes: Sequence[str] | None = None,
               limit_per_class: int | None = None, seed: int = 0, strict: bool = True,
               progress: bool = False) -> FaceSet:
    """Load dataset faces (already cropped) of ``classes`` from ``data``.

    ``data`` holds either FER2013's per-class zips (``<class>.zip`` with ``train/<class>/``
    and ``test/<class>/`` inside) or an image-folder tree (``<split>/<class>/*.jpg``, or
    ``<class>/*.jpg`` when ``split`` is None). ``limit_per_class`` keeps a seeded random
    sample per class. Every image goes through :func:`emolib.faces.prepare_crop`, exactly as a
    detected face does. A bad image fails with its name when ``strict``, else it is skipped.
    """
    root = Path(data) if data is not None else data_root() / "fer2013"
    classes = check_classes(classes, minimum=1)
    if not root.is_dir():
        raise EmolibError("data folder not found", root)
    rng = np.random.default_rng(seed)
    xs, ys, names = [], [], []
    skipped: list[str] = []
    sources = {c: _class_sources(root, split, c) for c in classes}
    empty = [c for c, s in sources.items() if not s]
    if empty:
        where = f"{split}/<class>/ folders or <class>.zip files" if split else "<class>/ folders"
        raise EmolibError(f"no images for class(es) {empty} (expected {where})", root)
    bar = progress_bar(total=sum(len(s) if limit_per_class is None else min(len(s), limit_per_class)
                          for s in sources.values()), desc=f"loading {split or 'faces'}", disable=not progress)
    for label, cls in enumerate(classes):
        items = sources[cls]
        if limit_per_class is not None and len(items) > limit_per_class:
            keep = np.sort(rng.choice(len(items), size=limit_per_class, replace=False))
            items = [items[i] for i in keep]
        for name, read in items:
            try:
                xs.append(decode_face(read(), name))
            except EmolibError as err:
                if strict:
                    raise
                skipped.append(str(err))
                continue
            finally:
                bar.update(1)
            ys.append(label)
            names.append(name)
    bar.close()
    if skipped:
        print(f"emolib: skipped {len(skipped)} unreadable image(s), first: {skipped[0]}", file=sys.stderr)
    x = np.stack(xs).astype(np.uint8) if xs else np.zeros((0, INPUT_SIZE, INPUT_SIZE), np.uint8)
    return FaceSet(x, np.asarray(ys, dtype=np.int64), classes, names, skipped)


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of indices: (keep, held_out), ``fraction`` of every class held out."""
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        n_held = int(round(len(idx) * fraction))
        if len(idx) >= 2:
            n_held = min(max(n_held, 1), len(idx) - 1)
        else:
            n_held = 0
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """'Balanced' weights n / (k * n_c): each class contributes equally to the loss."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


def _augment_batch(x, rotation_deg: float, shift: float, zoom: float, brightness: float, contrast: float):
    """Random flip + rotation + shift + zoom (one bilinear warp) and brightness/contrast, per image."""
    import tensorflow as tf

    b = tf.shape(x)[0]
    size = float(INPUT_SIZE)
    c = (size - 1.0) / 2.0
    flip = tf.where(tf.random.uniform([b]) < 0.5, -1.0, 1.0)
    theta = tf.random.uniform([b], -1.0, 1.0) * (rotation_deg * math.pi / 180.0)
    scale = 1.0 + tf.random.uniform([b], -zoom, zoom)
    tx = tf.random.uniform([b], -shift, shift) * size
    ty = tf.random.uniform([b], -shift, shift) * size
    cos, sin = tf.cos(theta) / scale, tf.sin(theta) / scale
    a0, a1 = cos * flip, -sin
    b0, b1 = sin * flip, cos
    a2 = c - a0 * c - a1 * c + tx
    b2 = c - b0 * c - b1 * c + ty
    zeros = tf.zeros([b])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    x = tf.raw_ops.ImageProjectiveTransformV3(images=x, transforms=transforms, output_shape=[INPUT_SIZE, INPUT_SIZE],
                                              fill_value=0.0, interpolation="BILINEAR", fill_mode="NEAREST")
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    gain = 1.0 + tf.random.uniform([b, 1, 1, 1], -contrast, contrast)
    offset = tf.random.uniform([b, 1, 1, 1], -brightness, brightness) * 255.0
    return tf.clip_by_value((x - mean) * gain + mean + offset, 0.0, 255.0)


def make_train_dataset(faces: FaceSet, batch_size: int, seed: int, balance: str = "weights",
                       augment: dict | None = None):
    """The training ``tf.data`` pipeline: shuffle, (balance), batch, augment, prefetch.

    ``balance``: ``weights`` (per-sample class weights), ``sampling`` (classes drawn equally
    often) or ``none``. ``augment``: None for none, else overrides of the default ranges
    (rotation_deg, shift, zoom, brightness, contrast). Yields (x float 0-255 (B, 48, 48, 1), one-hot y, sample weight).
    """
    import tensorflow as tf

    n_classes = len(faces.classes)
    aug = None if augment is None else {**AUGMENT_DEFAULTS, **augment}
    x = faces.x[..., None]
    y = faces.y.astype(np.int32)
    if balance == "weights":
        w = class_weights(faces.y, n_classes)[faces.y]
    elif balance in ("sampling", "none"):
        w = np.ones(len(y), np.float32)
    else:
        raise EmolibError(f"unknown balance {balance!r}: use weights, sampling or none")
    if balance == "sampling":
        parts = []
        for label in range(n_classes):
            idx = np.flatnonzero(y == label)
            parts.append(tf.data.Dataset.from_tensor_slices((x[idx], y[idx], w[idx]))
                         .shuffle(len(idx), seed=seed + label, reshuffle_each_iteration=True).repeat())
        ds = tf.data.Dataset.sample_from_datasets(parts, weights=[1.0 / n_classes] * n_classes, seed=seed)
        ds = ds.take(len(y))
    else:
        ds = tf.data.Dataset.from_tensor_slices((x, y, w)).shuffle(len(y), seed=seed, reshuffle_each_iteration=True)

    def prepare(xb, yb, wb):
        xb = tf.cast(xb, tf.float32)
        if aug is not None:
            xb = _augment_batch(xb, **aug)
        return xb, tf.one_hot(yb, n_classes), wb

    ds = ds.batch(batch_size).map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return ds.with_options(options)


def progress_bar(**kwargs):
    """A tqdm bar on stderr (human progress never goes to stdout)."""
    from tqdm.auto import tqdm

    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("mininterval", 2.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(**kwargs)
