"""The emotion CNN: data, build, train, evaluate, save, load and predict.

A photo's face crop (48x48 grayscale, see :mod:`emolib.faces`) goes in, one probability per
class comes out. The network keeps the original project's shape (5 convolutional blocks of
conv + batch norm + ReLU + pooling + dropout, then 5 fully connected hidden layers) with the
widths as parameters, chosen so training fits a 2-core CPU. Training reads FER2013's per-class
zips or any ``train/<class>/`` image-folder tree, balances the classes, augments, follows a
cosine learning-rate schedule, keeps the best epoch on validation macro-F1, and writes the
model atomically with ``metrics.json`` and plots beside it. The class list and preprocessing
are stored inside the ``.keras`` file (in its input layer), so a model file is self-describing.
"""
from __future__ import annotations

import functools
import json
import math
import os
import sys
import textwrap
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from emolib import FACE_CLASSES, FER_CLASSES, TRAIN_PRECISIONS
from emolib.errors import EmolibError
from emolib.faces import INPUT_SIZE, decode_face, find_faces, load_image
from emolib.files import atomic_path, write_json
from emolib.paths import MODELS_DIR, data_root
from emolib.runs import get_strategy

#: The shipped default model.
DEFAULT_MODEL = MODELS_DIR / "face" / "model.keras"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
#: Default widths (measured to fit a 2-core CPU; see the model card).
CONV_WIDTHS = (32, 64, 128, 192, 256)
DENSE_WIDTHS = (256, 128, 128, 64, 64)


# =========================================================================== data
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

    def subset(self, idx: np.ndarray) -> "FaceSet":
        """The faces at ``idx``."""
        return FaceSet(self.x[idx], self.y[idx], self.classes, [self.names[i] for i in idx] if self.names else [])

    def __len__(self) -> int:
        return len(self.y)


def _check_classes(classes: Sequence[str] | None, minimum: int = 2) -> tuple[str, ...]:
    classes = tuple(FACE_CLASSES if classes is None else classes)
    bad = [c for c in classes if c not in FER_CLASSES]
    if bad:
        raise EmolibError(f"unknown class(es) {bad}: choose from {list(FER_CLASSES)}")
    if len(classes) < minimum or len(set(classes)) != len(classes):
        raise EmolibError(f"need at least {minimum} distinct class{'es' if minimum > 1 else ''}, got {list(classes)}")
    return classes


def _is_zip_tree(root: Path, classes: Iterable[str]) -> bool:
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
    classes = _check_classes(classes, minimum=1)
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
    bar = _tqdm(total=sum(len(s) if limit_per_class is None else min(len(s), limit_per_class)
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


# =========================================================================== model
@functools.cache
def _layers() -> dict[str, type]:
    """The custom Keras objects (defined on first use so importing emolib stays light)."""
    import keras

    @keras.saving.register_keras_serializable(package="emolib")
    class FaceInput(keras.layers.Layer):
        """Scales 0-255 pixels to [0, 1]; its config records the classes and preprocessing."""

        def __init__(self, classes: Sequence[str] = (), preprocessing: dict | None = None, **kwargs):
            super().__init__(**kwargs)
            self.classes = tuple(classes)
            self.preprocessing = dict(preprocessing or {})

        def call(self, inputs):
            return keras.ops.cast(inputs, self.compute_dtype) / 255.0

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self) -> dict:
            return {**super().get_config(), "classes": list(self.classes), "preprocessing": self.preprocessing}

    return {"FaceInput": FaceInput}


def preprocessing_record(tta_flip: bool) -> dict[str, Any]:
    """How crops are made, stored inside the model so prediction matches training."""
    return {"input": f"{INPUT_SIZE}x{INPUT_SIZE} uint8 grayscale, pixel/255",
            "crop": "emolib.faces.prepare_crop (gray = ITU-R 601 luma; resize INTER_AREA)",
            "face_detection": "OpenCV Haar cascade frontalface_default (alt2 fallback), square box + 15% margin",
            "tta_flip": bool(tta_flip)}


def build_model(classes: Sequence[str], conv_widths: Sequence[int] = CONV_WIDTHS,
                dense_widths: Sequence[int] = DENSE_WIDTHS, convs_per_block: int | Sequence[int] | None = None,
                conv_dropout: float = 0.1, dense_dropout: float = 0.0, tta_flip: bool = True,
                bn_momentum: float = 0.99, dense_batchnorm: bool = True):
    """The 5+5-layer CNN: 5 blocks of (conv + BN + ReLU) x convs_per_block + max-pool + dropout,
    then 5 dense hidden layers (dense + BN + ReLU + dropout), then softmax over ``classes``.

    ``convs_per_block``: one number for every block or one per block; None (the default): one
    convolution in the first block (48x48, where a second one would double the cost) and two in each later one.

    Any number of blocks/layers works; 5 and 5 are the original's shape and the default.
    ``bn_momentum`` below 0.99 lets very short runs (tests, smoke runs) settle their
    batch-norm statistics.
    """
    import keras
    from keras import layers

    FaceInput = _layers()["FaceInput"]
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1), name="face")
    x = FaceInput(classes=classes, preprocessing=preprocessing_record(tta_flip), name="face_input")(inputs)
    for b, (width, convs) in enumerate(zip(conv_widths, _per_block(convs_per_block, conv_widths)), 1):
        for k in range(convs):
            x = layers.Conv2D(int(width), 3, padding="same", use_bias=False, name=f"block{b}_conv{k + 1}")(x)
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"block{b}_bn{k + 1}")(x)
            x = layers.ReLU(name=f"block{b}_relu{k + 1}")(x)
        x = layers.MaxPooling2D(2, padding="same", name=f"block{b}_pool")(x)
        if conv_dropout:
            x = layers.Dropout(conv_dropout, name=f"block{b}_drop")(x)
    x = layers.Flatten(name="flatten")(x)
    for d, width in enumerate(dense_widths, 1):
        x = layers.Dense(int(width), use_bias=not dense_batchnorm, kernel_initializer="he_normal", name=f"fc{d}")(x)
        if dense_batchnorm:
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"fc{d}_bn")(x)
        x = layers.ReLU(name=f"fc{d}_relu")(x)
        if dense_dropout:
            x = layers.Dropout(dense_dropout, name=f"fc{d}_drop")(x)
    outputs = layers.Dense(len(classes), activation="softmax", dtype="float32", name="emotion")(x)
    return keras.Model(inputs, outputs, name="emolib_face_cnn")


def _per_block(convs_per_block: int | Sequence[int] | None, conv_widths: Sequence[int]) -> list[int]:
    """Convolutions in each block: one number for all blocks, one per block, or None for 1, 2, 2, ..."""
    if convs_per_block is None:
        return [1] + [2] * (len(conv_widths) - 1)
    counts = [convs_per_block] * len(conv_widths) if isinstance(convs_per_block, int) else list(convs_per_block)
    if len(counts) != len(conv_widths) or min(counts, default=1) < 1:
        raise EmolibError(f"convs_per_block {convs_per_block!r} must be a number >= 1 or one per conv block "
                          f"({len(conv_widths)})")
    return [int(c) for c in counts]


# =========================================================================== tf.data
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
    aug = None if augment is None else {**dict(rotation_deg=10.0, shift=0.08, zoom=0.1, brightness=0.15, contrast=0.25),
                                        **augment}
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


# =========================================================================== metrics
def score(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support, confusion matrix (rows = truth)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(classes)))
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, int)
    p, r, f, s = precision_recall_fscore_support(y_true, pred, labels=labels, zero_division=0)
    cm = confusion_matrix(y_true, pred, labels=labels)
    eps = 1e-7
    nll = float(-np.mean(np.log(np.clip(probs[np.arange(len(y_true)), y_true], eps, 1.0)))) if len(y_true) else float("nan")
    return {
        "n": int(len(y_true)),
        "accuracy": float((pred == y_true).mean()) if len(y_true) else float("nan"),
        "macro_f1": float(np.mean(f)),
        "loss": nll,
        "precision": {c: float(v) for c, v in zip(classes, p)},
        "recall": {c: float(v) for c, v in zip(classes, r)},
        "f1": {c: float(v) for c, v in zip(classes, f)},
        "support": {c: int(v) for c, v in zip(classes, s)},
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
    }


def _predict_array(call, x: np.ndarray, tta_flip: bool, batch_size: int = 512) -> np.ndarray:
    """Probabilities for (N, 48, 48) uint8 crops from ``call`` (a Keras model or its tf.function),
    batched; with flip test-time augmentation (the mean over the crop and its mirror image) if asked."""
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size, :, :, None].astype(np.float32)
        if tta_flip:
            p = np.asarray(call(np.concatenate([xb, xb[:, :, ::-1]], axis=0), training=False))
            p = (p[:len(xb)] + p[len(xb):]) / 2.0
        else:
            p = np.asarray(call(xb, training=False))
        out.append(p)
    return np.concatenate(out)


def _cosine_schedule(peak: float, warmup_steps: int, total_steps, alpha: float = 0.02):
    """Linear warm-up to ``peak`` then cosine decay to ``alpha * peak`` at ``total_steps``.

    ``total_steps`` is a ``tf.Variable`` so a time budget can shorten the run and the decay
    still ends at the last epoch.
    """
    import keras
    import tensorflow as tf

    class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            total = tf.cast(total_steps, tf.float32)
            warm = peak * (0.1 + 0.9 * step / max(warmup_steps, 1))
            progress = tf.clip_by_value((step - warmup_steps) / tf.maximum(total - warmup_steps, 1.0), 0.0, 1.0)
            decayed = peak * (alpha + (1.0 - alpha) * 0.5 * (1.0 + tf.cos(math.pi * progress)))
            return tf.where(step < warmup_steps, warm, decayed)

        def get_config(self):
            return {"peak": peak, "warmup_steps": warmup_steps, "alpha": alpha}

    return WarmupCosine()


def _tqdm(**kwargs):
    from tqdm.auto import tqdm

    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("mininterval", 2.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(**kwargs)


def _recompute_batchnorm(model, x: np.ndarray, batch_size: int = 128, max_batches: int = 40) -> None:
    """Re-estimate every batch-norm layer's moving mean and variance for ``model``'s current weights
    (needed after averaging weights, whose statistics no single epoch saw): the plain mean over
    forward passes in training mode on up to ``max_batches`` batches of the (N, 48, 48) crops ``x``."""
    import keras

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in norms]
    try:
        for k, start in enumerate(range(0, min(len(x), batch_size * max_batches), batch_size)):
            for layer in norms:  # momentum k/(k+1): the moving statistics become the running mean of the batches'
                layer.momentum = k / (k + 1)
            model(x[start:start + batch_size, :, :, None].astype(np.float32), training=True)
    finally:
        for layer, momentum in zip(norms, saved):
            layer.momentum = momentum


def _callbacks(val: FaceSet, monitor: str, patience: int, history: dict, progress: bool, steps: int, epochs: int,
               total_steps=None, time_budget_s: float | None = None, average_last: int = 0,
               bn_x: np.ndarray | None = None):
    """Per-epoch validation (macro-F1, loss), best-weights keeping, early stopping, a progress bar,
    the time budget (fewer epochs, with the learning-rate decay rescaled to end on the last), and
    weight averaging over the last ``average_last`` epochs, kept unless validation says it is worse than the best
    epoch."""
    import keras

    def monitored(res: dict) -> float:
        return res["macro_f1"] if monitor == "val_macro_f1" else -res["loss"]

    class Track(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best = -math.inf
            self.best_epoch = -1
            self.best_weights = None
            self.wait = 0
            self.t0 = 0.0
            self.bar = None
            self.fit_start = None
            self.planned = epochs
            self.avg = None
            self.avg_epochs: list[int] = []
            self.average: dict[str, Any] | None = None
            self.alternative: list[np.ndarray] | None = None  # the weights not kept, when averaging

        def on_train_begin(self, logs=None):
            self.fit_start = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()
            if progress:
                self.bar = _tqdm(total=steps, desc=f"epoch {epoch + 1}/{epochs}", leave=True, unit="batch",
                                 mininterval=10.0 if not sys.stderr.isatty() else 0.5)

        def on_train_batch_end(self, batch, logs=None):
            if self.bar is not None:
                self.bar.update(1)
                if logs and batch % 20 == 0:
                    self.bar.set_postfix(loss=f"{float(logs.get('loss', 0)):.3f}", acc=f"{float(logs.get('accuracy', 0)):.3f}",
                                         refresh=False)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            train_seconds = time.perf_counter() - self.t0
            res = score(val.y, _predict_array(self.model, val.x, tta_flip=False), val.classes)
            lr = self.model.optimizer.learning_rate
            lr = float(lr.numpy() if hasattr(lr, "numpy") else lr)
            row = {"epoch": epoch + 1, "loss": float(logs.get("loss", float("nan"))),
                   "accuracy": float(logs.get("accuracy", float("nan"))), "val_loss": res["loss"],
                   "val_accuracy": res["accuracy"], "val_macro_f1": res["macro_f1"], "lr": lr,
                   "seconds": train_seconds, "seconds_with_validation": time.perf_counter() - self.t0}
            for key, value in row.items():
                history.setdefault(key, []).append(value)
            logs.update({"val_macro_f1": res["macro_f1"], "val_loss": res["loss"], "val_accuracy": res["accuracy"]})
            current = monitored(res)
            improved = current > self.best + 1e-4
            if improved:
                self.best, self.best_epoch, self.wait = current, epoch + 1, 0
                self.best_weights = self.model.get_weights()
            else:
                self.wait += 1
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            print(f"epoch {epoch + 1}/{epochs}: loss {row['loss']:.4f} acc {row['accuracy']:.4f} | val loss "
                  f"{row['val_loss']:.4f} acc {row['val_accuracy']:.4f} macro-F1 {row['val_macro_f1']:.4f} | "
                  f"lr {lr:.2e} | {train_seconds:.0f}s{' *best*' if improved else ''}", file=sys.stderr, flush=True)
            done = epoch + 1
            if time_budget_s and done < self.planned:
                elapsed = time.perf_counter() - self.fit_start
                recent = history["seconds_with_validation"][-3:]
                per_epoch = float(np.mean(recent[1:] if len(recent) > 1 else recent))
                fits = done + int(max(0.0, time_budget_s - elapsed) // per_epoch)
                planned = int(min(epochs, max(done, fits)))
                if planned != self.planned:
                    print(f"time budget {time_budget_s / 60:.0f} min at {per_epoch:.0f}s/epoch: {planned} epochs",
                          file=sys.stderr, flush=True)
                    self.planned = planned
                    if total_steps is not None:
                        total_steps.assign(float(planned * steps))
            history.setdefault("planned_epochs", []).append(self.planned)
            if average_last and self.planned - done < average_last:  # inside the averaging window: running mean
                weights = self.model.get_weights()
                if self.avg is None:
                    self.avg = [w.astype(np.float64) for w in weights]
                else:
                    n = len(self.avg_epochs) + 1
                    self.avg = [a + (w - a) / n for a, w in zip(self.avg, weights)]
                self.avg_epochs.append(done)
            elif self.avg is not None:  # the time budget moved the end later: start the window again
                self.avg, self.avg_epochs = None, []
            if done >= self.planned:
                self.model.stop_training = True
            if patience and self.wait >= patience:
                print(f"early stopping: no {monitor} gain for {patience} epochs (best epoch {self.best_epoch})",
                      file=sys.stderr, flush=True)
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            keep = self.best_weights
            if self.avg is not None and len(self.avg_epochs) > 1:
                self.model.set_weights(self.avg)
                if bn_x is not None and len(bn_x):
                    _recompute_batchnorm(self.model, bn_x)
                res = score(val.y, _predict_array(self.model, val.x, tta_flip=False), val.classes)
                # The best epoch's score is the highest of many noisy ones, so it flatters that epoch: the average
                # is kept when it beats the epochs it averages and trails the best by no more than their spread.
                window = [monitored({"macro_f1": history["val_macro_f1"][e - 1], "loss": history["val_loss"][e - 1]})
                          for e in self.avg_epochs]
                typical, spread = float(np.mean(window)), float(np.std(window, ddof=1))
                chosen = monitored(res) >= typical and monitored(res) >= self.best - spread
                self.average = {"epochs": self.avg_epochs, "val_accuracy": res["accuracy"],
                                "val_macro_f1": res["macro_f1"], "val_loss": res["loss"],
                                "epochs_val_mean": typical if monitor == "val_macro_f1" else -typical,
                                "epochs_val_sd": spread, "chosen": bool(chosen)}
                print(f"weights averaged over epochs {self.avg_epochs[0]}-{self.avg_epochs[-1]}: val acc "
                      f"{res['accuracy']:.4f} macro-F1 {res['macro_f1']:.4f} loss {res['loss']:.4f}: "
                      f"{'kept' if chosen else f'best epoch {self.best_epoch} kept instead'}", file=sys.stderr,
                      flush=True)
                if chosen:
                    keep, self.alternative = None, self.best_weights
                else:
                    self.alternative = self.model.get_weights()
            if keep is not None:
                self.model.set_weights(keep)

    return Track()


# =========================================================================== train
def train(data: str | os.PathLike | None, out: str | os.PathLike, *, classes: Sequence[str] | None = None,
          epochs: int = 40, seed: int = 0, batch_size: int = 64, limit_per_class: int | None = None,
          strategy: Any = "default", val_fraction: float = 0.1, conv_widths: Sequence[int] = CONV_WIDTHS,
          dense_widths: Sequence[int] = DENSE_WIDTHS, convs_per_block: int | Sequence[int] | None = None,
          conv_dropout: float = 0.1,
          dense_dropout: float = 0.0, bn_momentum: float = 0.99, learning_rate: float = 1e-3, weight_decay: float = 0.02,
          label_smoothing: float = 0.0, warmup_epochs: float = 1.0, balance: str = "weights",
          augment: bool | dict = True, monitor: str = "val_macro_f1", patience: int = 10, tta_flip: bool = True,
          evaluate_test: bool = True, plots: bool = True, progress: bool = True,
          time_budget_min: float | None = None, init_model: str | os.PathLike | None = None,
          command: str | None = None,
          threads: int | None = None, precision: str = "float32", average_last: int = 0) -> dict[str, Any]:
    """Train the face-emotion CNN on ``data`` and save it to ``out`` (``.keras``).

    Writes ``out``, ``metrics.json``, ``curves.png`` and ``confusion.png`` beside it and returns
    the metrics: test-split scores when ``data`` has a test split (else validation scores),
    per-class precision/recall, confusion matrix, epochs, seconds per epoch, seed, data counts,
    the architecture and the exact command. A stratified, seeded ``val_fraction`` of train
    chooses the best epoch (``monitor``: val_macro_f1 or val_loss) and stops early after
    ``patience`` epochs without gain (0: never). ``init_model`` starts from a trained model's
    weights (same classes and widths) to continue training it. ``time_budget_min`` caps the training time: after each
    epoch the number of epochs that still fit is re-estimated (at most ``epochs``) and the
    cosine learning-rate decay is rescaled to end on the last one. Everything is built inside ``strategy``'s scope, so the
    same call trains on one CPU, a GPU, or several GPUs/workers (see :func:`get_strategy`).
    ``precision`` "mixed_bfloat16" trains about 1.4x faster on CPUs with AMX/AVX-512 bf16 (and on recent GPUs),
    "mixed_float16" suits older GPUs; the saved model is always float32, so it predicts the same everywhere.
    ``average_last`` N > 1 also averages the weights of the last N epochs (batch-norm statistics re-estimated on
    training faces) and keeps the average instead of the best epoch when, on validation, it beats the mean of the
    epochs it averages and trails the best one by no more than their standard deviation: late epochs at a low
    learning rate differ mostly by noise, which the average cancels and which also inflates the best epoch's score.
    """
    out = Path(out)
    if out.suffix != ".keras":
        raise EmolibError("the model path must end in .keras", out)
    if monitor not in ("val_macro_f1", "val_loss"):
        raise EmolibError(f"unknown monitor {monitor!r}: use val_macro_f1 or val_loss")
    if epochs < 1 or batch_size < 1:
        raise EmolibError("epochs and batch_size must be at least 1")
    if average_last < 0 or average_last == 1:
        raise EmolibError(f"average_last must be 0 (off) or at least 2 epochs, not {average_last}")
    if precision not in TRAIN_PRECISIONS:
        raise EmolibError(f"unknown precision {precision!r}: use one of {', '.join(TRAIN_PRECISIONS)}")
    classes = _check_classes(classes)
    params = {k: v for k, v in locals().items() if k not in ("out", "data", "command", "progress")}
    params.update(data=str(data) if data is not None else None, out=str(out), classes=list(classes),
                  init_model=str(init_model) if init_model is not None else None,
                  conv_widths=list(conv_widths), dense_widths=list(dense_widths),
                  strategy=strategy if strategy is None or isinstance(strategy, str) else type(strategy).__name__)
    t_start = time.perf_counter()

    import keras
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    keras.utils.set_random_seed(seed)
    root = Path(data) if data is not None else data_root() / "fer2013"
    full = load_faces(root, "train", classes, limit_per_class=limit_per_class, seed=seed, progress=progress)
    keep, held = stratified_split(full.y, val_fraction, seed)
    train_set, val_set = full.subset(keep), full.subset(held)
    test_set = None
    if evaluate_test:
        try:
            test_set = load_faces(root, "test", classes, seed=seed, progress=progress)
        except EmolibError as err:
            print(f"emolib: no test split scored ({err})", file=sys.stderr)
    if len(val_set) == 0:
        raise EmolibError("too few training images to carve a validation split", root)

    strat = get_strategy(strategy)
    if time_budget_min and strat.extended._in_multi_worker_mode():
        raise EmolibError("time_budget_min needs one worker (each worker would time itself): give epochs instead")
    total_steps = tf.Variable(float(epochs * math.ceil(len(train_set) / batch_size)), trainable=False, dtype=tf.float32)
    steps = math.ceil(len(train_set) / batch_size)
    ds = make_train_dataset(train_set, batch_size, seed, balance=balance,
                            augment=(augment if isinstance(augment, dict) else ({} if augment else None)))
    new_model = functools.partial(build_model, classes, conv_widths, dense_widths, convs_per_block, conv_dropout,
                                  dense_dropout, tta_flip, bn_momentum)
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        with strat.scope():
            model = new_model()
            init_info = None
            if init_model is not None:
                init = load_model(init_model)
                if tuple(init.classes) != classes:
                    raise EmolibError(f"init model classes {list(init.classes)} differ from {list(classes)}",
                                      init_model)
                try:
                    model.set_weights(init.keras_model.get_weights())
                except ValueError as err:
                    raise EmolibError(f"init model has other widths than this run ({err})", init_model) from None
                init_metrics = Path(init_model).parent / "metrics.json"
                init_info = {"path": str(init_model)}
                if init_metrics.is_file():
                    prev = json.loads(init_metrics.read_text())
                    init_info.update({k: prev.get(k) for k in ("command", "epochs_run", "best_epoch",
                                                                 "train_seconds", "seconds_per_epoch", "accuracy",
                                                                 "macro_f1", "scored_on")})
            warmup = int(round(warmup_epochs * steps))
            schedule = _cosine_schedule(learning_rate, warmup, total_steps)
            model.compile(optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay),
                          loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                          metrics=["accuracy"], jit_compile=False)
        history: dict[str, list] = {}
        bn_faces = (train_set.x[np.sort(np.random.default_rng(seed).permutation(len(train_set))[:5120])]
                    if average_last else None)  # to re-estimate batch-norm statistics for averaged weights
        tracker = _callbacks(val_set, monitor, patience, history, progress, steps, epochs, total_steps,
                             time_budget_min * 60.0 if time_budget_min else None, average_last, bn_faces)
        print(f"training {model.count_params():,} parameters on {len(train_set)} faces ({train_set.counts()}), "
              f"validating on {len(val_set)}, {steps} batches/epoch, strategy {type(strat).__name__}",
              file=sys.stderr, flush=True)
        t_fit = time.perf_counter()
        model.fit(ds, epochs=epochs, verbose=0, callbacks=[tracker], shuffle=False)
        fit_seconds = time.perf_counter() - t_fit
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    if precision != "float32":  # ship float32 weights and layers: same predictions on any CPU or GPU
        with strat.scope():
            trained, model = model, new_model()
            model.set_weights(trained.get_weights())

    val_scores = score(val_set.y, _predict_array(model, val_set.x, tta_flip), classes)
    test_scores = score(test_set.y, _predict_array(model, test_set.x, tta_flip), classes) if test_set is not None and len(test_set) else None
    test_plain = score(test_set.y, _predict_array(model, test_set.x, False), classes) if test_scores else None
    if test_scores and tracker.average and tracker.alternative is not None:  # for the record only, never to choose
        kept = model.get_weights()
        model.set_weights(tracker.alternative)
        other = score(test_set.y, _predict_array(model, test_set.x, tta_flip), classes)
        model.set_weights(kept)
        tracker.average["test_of_the_one_not_kept"] = {k: other[k] for k in ("accuracy", "macro_f1", "recall")}

    _save_model(model, out)
    headline = test_scores or val_scores
    epoch_seconds = history.get("seconds", [])
    metrics: dict[str, Any] = {
        "kind": "face_emotion_cnn",
        "model": out.name,
        "classes": list(classes),
        "scored_on": "test" if test_scores else "validation",
        "accuracy": headline["accuracy"],
        "macro_f1": headline["macro_f1"],
        "recall": headline["recall"],
        "precision": headline["precision"],
        "confusion_matrix": headline["confusion_matrix"],
        "test": test_scores,
        "test_without_tta": test_plain,
        "validation": val_scores,
        "epochs_run": len(epoch_seconds),
        "epochs_planned": epochs,
        "best_epoch": tracker.best_epoch,
        "weight_average": tracker.average,
        "seconds_per_epoch": float(np.mean(epoch_seconds)) if epoch_seconds else None,
        "train_seconds": fit_seconds,
        "total_seconds": time.perf_counter() - t_start,
        "seed": seed,
        "data": {"source": str(root), "train": train_set.counts(), "validation": val_set.counts(),
                 "test": test_set.counts() if test_set is not None else None, "limit_per_class": limit_per_class},
        "architecture": {"conv_blocks": len(conv_widths), "conv_widths": list(conv_widths),
                         "convs_per_block": _per_block(convs_per_block, conv_widths), "dense_layers": len(dense_widths),
                         "dense_widths": list(dense_widths), "conv_dropout": conv_dropout,
                         "dense_dropout": dense_dropout, "parameters": int(model.count_params())},
        "preprocessing": preprocessing_record(tta_flip),
        "parameters": params,
        "strategy": type(strat).__name__,
        "machine": {"cpus": os.cpu_count(), "tensorflow": tf.__version__, "keras": keras.__version__,
                    "load_average": os.getloadavg()[1] if hasattr(os, "getloadavg") else None},
        "model_bytes": out.stat().st_size,
        "command": command or _python_command(params, data),
        "init_model": init_info,
        "history": history,
    }
    write_json(out.parent / "metrics.json", metrics)
    if plots:
        save_plots(metrics, out.parent)
    write_model_card(out.parent)
    _MODEL_CACHE.pop(str(out.resolve()), None)
    return metrics


def _save_model(model, out: Path) -> None:
    """Save architecture + weights without the optimizer state (a third of the size), atomically."""
    import keras

    clean = keras.Model.from_config(model.get_config(), custom_objects=_layers())
    clean.set_weights(model.get_weights())
    with atomic_path(out) as tmp:
        clean.save(tmp)
        os.chmod(tmp, 0o644)


def _python_command(params: dict, data: Any) -> str:
    keys = ("classes", "epochs", "seed", "batch_size", "limit_per_class")
    args = ", ".join(f"{k}={params[k]!r}" for k in keys)
    return f"emolib.emotion.train({str(data)!r}, {params['out']!r}, {args})"


# =========================================================================== plots
def loss_description(parameters: dict[str, Any]) -> str:
    """How the training loss was weighted, from a run's recorded parameters (for plots and the model card)."""
    smoothing = parameters.get("label_smoothing") or 0
    balance = {"weights": "class-weighted",
               "sampling": "classes sampled equally", "none": "unweighted"}.get(parameters.get("balance", "weights"))
    return "cross-entropy" + (f", label smoothing {smoothing:g}" if smoothing else "") + f", {balance}"


def plot_history(history: dict[str, list], loss_note: str = ""):
    """Training curves (loss, accuracy, validation macro-F1, learning rate) as a matplotlib Figure.

    ``loss_note`` (e.g. :func:`loss_description`) says how the training loss was weighted, since
    it is not comparable with the unweighted validation loss beside it.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.6), layout="constrained")
    axes = fig.subplots(1, 4)
    epochs = history.get("epoch", [])
    for ax, keys, title in [(axes[0], ("loss", "val_loss"), "loss"), (axes[1], ("accuracy", "val_accuracy"), "accuracy"),
                            (axes[2], ("val_macro_f1",), "validation macro-F1"), (axes[3], ("lr",), "learning rate")]:
        for key in keys:
            if history.get(key):
                ax.plot(epochs, history[key], marker=".", label=key.replace("_", " "))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend()
    if loss_note:
        axes[0].text(0.02, 0.02, textwrap.fill(f"train loss: {loss_note}", 45), transform=axes[0].transAxes,
                     fontsize=7, alpha=0.7)
    return fig


def plot_confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str = "confusion matrix"):
    """Confusion-matrix heatmap (rows: true class, normalised to recall; counts annotated), seaborn."""
    import seaborn as sns
    from matplotlib.figure import Figure

    cm = np.asarray(matrix, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    annot = np.array([[f"{norm[i, j]:.2f}\n({int(cm[i, j])})" for j in range(cm.shape[1])] for i in range(cm.shape[0])])
    fig = Figure(figsize=(1.3 * len(classes) + 2, 1.1 * len(classes) + 1.5), layout="constrained")
    ax = fig.subplots()
    sns.heatmap(norm, annot=annot, fmt="", cmap="Blues", vmin=0, vmax=1, xticklabels=classes, yticklabels=classes,
                ax=ax, cbar_kws={"label": "fraction of the true class"})
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return fig


def save_plots(metrics: dict[str, Any], folder: str | os.PathLike) -> list[Path]:
    """Write ``curves.png`` and ``confusion.png`` for a training run's metrics into ``folder``."""
    folder = Path(folder)
    written = []
    if metrics.get("history"):
        fig = plot_history(metrics["history"], loss_description(metrics.get("parameters", {})))
        with atomic_path(folder / "curves.png") as tmp:
            fig.savefig(tmp, dpi=110)
        written.append(folder / "curves.png")
    fig = plot_confusion(metrics["confusion_matrix"], metrics["classes"],
                         title=f"{metrics.get('scored_on', '')} split: accuracy {metrics['accuracy']:.3f}, "
                               f"macro-F1 {metrics['macro_f1']:.3f}")
    with atomic_path(folder / "confusion.png") as tmp:
        fig.savefig(tmp, dpi=110)
    written.append(folder / "confusion.png")
    return written


# =========================================================================== load + predict
_MODEL_CACHE: dict[str, "EmotionModel"] = {}


class EmotionModel:
    """A loaded face-emotion model: its classes and fast prediction on crops and photos."""

    def __init__(self, keras_model, path: Path | None = None):
        self.keras_model = keras_model
        self.path = path
        layer = _find_face_input(keras_model)
        classes = tuple(layer.classes) if layer is not None and layer.classes else None
        meta = dict(layer.preprocessing) if layer is not None else {}
        if classes is None and path is not None and (path.parent / "metrics.json").is_file():
            classes = tuple(json.loads((path.parent / "metrics.json").read_text())["classes"])
        n_out = int(keras_model.output_shape[-1])
        if classes is None or len(classes) != n_out:
            raise EmolibError(f"the model does not record its {n_out} class names", path)
        self.classes: tuple[str, ...] = classes
        self.preprocessing: dict[str, Any] = meta
        self.tta_flip: bool = bool(meta.get("tta_flip", False))
        self._call = None

    def __repr__(self) -> str:
        return f"EmotionModel(classes={self.classes}, path={str(self.path) if self.path else None!r})"

    def _fn(self):
        if self._call is None:
            import tensorflow as tf

            model = self.keras_model
            self._call = tf.function(lambda x, training=False: model(x, training=training), reduce_retracing=True)
        return self._call

    def predict(self, crops: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """(N, C) probabilities (rows sum to 1, columns in ``classes`` order) for (N, 48, 48) uint8 crops."""
        crops = np.asarray(crops)
        if crops.ndim == 2:
            crops = crops[None]
        if crops.ndim == 4 and crops.shape[-1] == 1:
            crops = crops[..., 0]
        if crops.ndim != 3 or crops.shape[1:] != (INPUT_SIZE, INPUT_SIZE):
            raise EmolibError(f"crops must be (N, {INPUT_SIZE}, {INPUT_SIZE}) grayscale, got {crops.shape}")
        if len(crops) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        return _predict_array(self._fn(), crops, self.tta_flip, batch_size).astype(np.float32)

    def predict_photo(self, src: Any, all_faces: bool = False, name: str | None = None) -> list[dict[str, Any]]:
        """Emotion of the faces in a photo (path, bytes, PIL image or array), largest face first.

        Each dict: ``box`` [x, y, w, h], ``face_found`` (False: no face, the center square was
        used), ``probabilities`` {class: p}, ``emotion`` (the most probable class). Only the
        largest face unless ``all_faces``.
        """
        faces = find_faces(load_image(src, name))
        if not all_faces:
            faces = faces[:1]
        probs = self.predict(np.stack([f.crop for f in faces]))
        return [{"box": [int(v) for v in f.box], "face_found": bool(f.found),
                 "probabilities": {c: float(p) for c, p in zip(self.classes, row)},
                 "emotion": self.classes[int(np.argmax(row))]} for f, row in zip(faces, probs)]


def _find_face_input(keras_model):
    FaceInput = _layers()["FaceInput"]
    for layer in keras_model.layers:
        if isinstance(layer, FaceInput):
            return layer
    return None


def load_model(path: str | os.PathLike | None = None) -> EmotionModel:
    """Load a face model (``.keras``, Keras safe mode); None = the shipped default. Cached per process."""
    path = Path(path) if path is not None else DEFAULT_MODEL
    key = str(path.resolve())
    cached = _MODEL_CACHE.get(key)
    if cached is not None:
        return cached
    if not path.is_file():
        hint = " (the shipped model is missing: reinstall emolib)" if path == DEFAULT_MODEL else ""
        raise EmolibError(f"model file not found{hint}", path)
    import keras

    _layers()
    try:
        keras_model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as err:  # noqa: BLE001 - any load failure becomes one named error
        raise EmolibError(f"not a loadable .keras face model ({type(err).__name__}: {err})", path) from None
    model = EmotionModel(keras_model, path)
    _MODEL_CACHE[key] = model
    return model


def evaluate_dir(dir: str | os.PathLike, model: EmotionModel | str | os.PathLike | None = None, *,
                 split: str | None = None, limit_per_class: int | None = None, seed: int = 0,
                 batch_size: int = 512, progress: bool = False) -> dict[str, Any]:
    """Score a model on dataset faces (already cropped: no detection), preprocessed exactly as in training.

    ``dir`` holds ``<class>/`` folders, or ``<split>/<class>/`` folders, or FER2013's
    ``<class>.zip`` files (``split`` defaults to ``test`` then). Only folders named for one of
    the model's classes are scored; others are listed under ``ignored``. Returns n, accuracy,
    macro-F1, per-class recall/precision/F1/support and the confusion matrix. Unreadable images
    are skipped and listed (with the reason) under ``skipped``.
    """
    if not isinstance(model, EmotionModel):
        model = load_model(model)
    root = Path(dir)
    if not root.is_dir():
        raise EmolibError("folder not found", root)
    if _is_zip_tree(root, model.classes) and split is None:
        split = "test"
    if split is not None and not _is_zip_tree(root, model.classes):
        if not (root / split).is_dir():
            raise EmolibError(f"no {split}/ folder", root)
        root, split = root / split, None
    if split is not None:
        present = sorted(p.stem for p in root.glob("*.zip"))
    else:
        present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    used = [c for c in model.classes if c in present]
    ignored = [c for c in present if c not in model.classes]
    if not used:
        hint = " (pass split='test' / --split test)" if {"train", "test"} & set(present) else ""
        raise EmolibError(f"no subfolder named for the model's classes {list(model.classes)} (found {present}){hint}", root)
    faces = load_faces(root, split, used, limit_per_class=limit_per_class, seed=seed, strict=False, progress=progress)
    # Labels are indices into the model's classes, even when some classes are absent.
    y = np.asarray([model.classes.index(used[i]) for i in faces.y], dtype=np.int64)
    probs = model.predict(faces.x, batch_size=batch_size)
    res = score(y, probs, model.classes)
    res.pop("loss")
    return {"dir": str(Path(dir)), "split": split, "model": str(model.path) if model.path else None, **res,
            "missing_classes": [c for c in model.classes if c not in used], "ignored": ignored,
            "skipped": faces.skipped}


# =========================================================================== model card
#: Targets of the shipped model on FER2013's test split (issue #3).
TARGETS = {"accuracy": 0.75, "macro_f1": 0.72, "min_recall": 0.60, "model_mb": 15.0, "train_minutes_2_cpu": 90.0}


def model_card(metrics: dict[str, Any], notes: str = "") -> str:
    """A short Markdown model card from a training run's metrics: data, licence, results, limits, biases, command."""
    test = metrics.get("test") or metrics["validation"]
    arch = metrics["architecture"]
    data = metrics["data"]
    classes = metrics["classes"]
    mb = metrics["model_bytes"] / 1e6
    init = metrics.get("init_model") or {}
    total_min = (metrics["train_seconds"] + (init.get("train_seconds") or 0.0)) / 60
    min_recall = min(test["recall"].values())
    convs = arch["convs_per_block"]
    convs = convs[0] if isinstance(convs, list) and len(set(convs)) == 1 else convs
    checks = [("accuracy", test["accuracy"], f">= {TARGETS['accuracy']}", test["accuracy"] >= TARGETS["accuracy"]),
              ("macro-F1", test["macro_f1"], f">= {TARGETS['macro_f1']}", test["macro_f1"] >= TARGETS["macro_f1"]),
              ("lowest class recall", min_recall, f">= {TARGETS['min_recall']}", min_recall >= TARGETS["min_recall"]),
              ("model file (MB)", mb, f"<= {TARGETS['model_mb']:.0f}", mb <= TARGETS["model_mb"]),
              ("training time (min)", total_min, f"<= {TARGETS['train_minutes_2_cpu']:.0f} on 2 CPU cores",
               total_min <= TARGETS["train_minutes_2_cpu"])]
    rows = "\n".join(f"| {name} | {value:.3f} | {target} | {'yes' if ok else '**no**'} |" for name, value, target, ok in checks)
    per_class = "\n".join(f"| {c} | {test['precision'][c]:.3f} | {test['recall'][c]:.3f} | {test['f1'][c]:.3f} | "
                          f"{test['support'][c]} |" for c in classes)
    cm = test["confusion_matrix"]
    cm_rows = "\n".join(f"| **{c}** | " + " | ".join(str(v) for v in cm[i]) + " |" for i, c in enumerate(classes))
    if init.get("command"):
        stages = (f"- Two stages, {total_min:.1f} min of training in all. Stage 1 ({init.get('epochs_run')} epochs, best "
                  f"epoch {init.get('best_epoch')} kept, {init.get('train_seconds', 0) / 60:.1f} min, "
                  f"{init.get('seconds_per_epoch') or 0:.0f} s/epoch), then its model copied to `{init['path']}`:\n\n"
                  f"```\n{init['command']}\nmkdir -p {Path(init['path']).parent} && cp {Path(metrics['parameters']['out']).parent}/* "
                  f"{Path(init['path']).parent}/\n```\n\n  Stage 2 continues from it at a lower learning rate decaying to "
                  f"zero (the numbers above describe this stage):\n\n```\n{metrics['command']}\n```\n")
    else:
        stages = f"- Exact command (from the repository root):\n\n```\n{metrics['command']}\n```\n"
    load = metrics["machine"].get("load_average")
    load = f", load average {load:.1f} at the end" if load is not None else ""
    with_val = float(np.mean(metrics["history"].get("seconds_with_validation") or [metrics["seconds_per_epoch"]]))
    avg = metrics.get("weight_average")
    kept = f"The epoch with the best validation macro-F1 is kept (best: epoch {metrics['best_epoch']} of {metrics['epochs_run']} run)"
    if avg:
        kept += (f"; the weights averaged over epochs {avg['epochs'][0]}-{avg['epochs'][-1]} (batch-norm statistics "
                 f"re-estimated) scored validation macro-F1 {avg['val_macro_f1']:.3f} and "
                 + ("were kept instead" if avg["chosen"] else "were not kept"))
    plain = metrics.get("test_without_tta")
    tta_line = (f"Without the flip averaging: accuracy {plain['accuracy']:.3f}, macro-F1 {plain['macro_f1']:.3f}."
                if plain else "")
    return f"""# Model card: emolib face-emotion CNN ({', '.join(classes)})

**What it does.** Reads the emotion on one face: input a 48x48 grayscale crop (made by
`emolib.faces`, which finds faces with OpenCV's Haar cascade), output one probability per class
({', '.join(classes)}). Predictions average the face and its mirror image (flip test-time
augmentation: {metrics['preprocessing'].get('tta_flip')}). Files: `model.keras` (Keras 3, loads with
`safe_mode=True`; the class list and preprocessing are stored inside it), `metrics.json` (every
figure below, per-epoch history, exact parameters), `curves.png`, `confusion.png`.

## Data
FER2013 (Goodfellow et al., 2013, "Challenges in Representation Learning: A report on three machine
learning contests", ICML 2013 workshop; Kaggle image-folder release): 48x48 grayscale faces found by
Google image searches for emotion words, each labelled with one of seven emotions. This model uses
{len(classes)} classes. Training faces: {sum(data['train'].values())} ({_counts(data['train'])}); a stratified,
seeded 10% of the train split held out for choosing the epoch: {sum(data['validation'].values())};
test (PublicTest) faces: {sum(data['test'].values()) if data.get('test') else 0} ({_counts(data['test']) if data.get('test') else '-'}).

**Licence.** FER2013 ships without licence text; its customary terms are research use. The weights are
derived from it: treat the model as research/teaching material, not for commercial use. No training
image is redistributed with emolib.

## Results on the FER2013 test split ({test['n']} faces)
| measure | value | target | met |
|---|---|---|---|
{rows}

| class | precision | recall | F1 | faces |
|---|---|---|---|---|
{per_class}

Confusion matrix (rows: true class, columns: predicted, in the order {', '.join(classes)}):

| true \\ predicted | {' | '.join(classes)} |
|---|{'---|' * len(classes)}
{cm_rows}

{tta_line}

## Training
- Network: {arch['conv_blocks']} convolutional blocks ((3x3 conv + batch norm + ReLU) x {convs} + 2x2
  max-pool, dropout {arch['conv_dropout']}) with widths {arch['conv_widths']}, then {arch['dense_layers']} fully
  connected hidden layers (dense + batch norm + ReLU, dropout {arch['dense_dropout']}) with widths
  {arch['dense_widths']}, softmax output; {arch['parameters']:,} parameters, {mb:.1f} MB file.
- Loss: {loss_description(metrics['parameters'])}; AdamW (weight decay {metrics['parameters'].get('weight_decay')}), peak learning rate {metrics['parameters'].get('learning_rate')} with
  {metrics['parameters'].get('warmup_epochs', 1):g} warm-up epoch(s), then cosine decay; augmentation: flip, rotation +-10 deg, shift +-8%, zoom +-10%, brightness +-15%,
  contrast +-25%. {kept}.
- Time: {metrics['seconds_per_epoch']:.0f} s per training epoch ({with_val:.0f} s with the validation pass),
  {metrics['epochs_run']} epochs, {metrics['train_seconds'] / 60:.1f} min of training, {metrics['total_seconds'] / 60:.1f} min with loading and scoring, on {metrics['machine']['cpus']} CPU cores
  (TensorFlow {metrics['machine']['tensorflow']}{load}), seed {metrics['seed']}.
{stages}
## Limits
- Frontal, reasonably lit faces. The Haar cascade misses profiles, strongly tilted or partly hidden faces; then the
  whole image (center square) is used and the result says `face_found: false`: treat those predictions as weak.
- Only {', '.join(classes)}: any other expression (fear, surprise, disgust...) is forced into one of them.
- FER2013's labels are noisy (human accuracy on it is about 65% over 7 classes); sad, neutral and angry are the
  classes most often confused with one another, by people as by this model.
- A snapshot of one face, not a person's feelings: do not use it to make decisions about people.

## Known biases
- Faces come from web image searches for emotion words: posed and exaggerated expressions, mostly adults,
  over-represented lighter skin tones and Western-style expression conventions. FER2013 has no demographic labels,
  so accuracy per age, gender or skin tone could not be measured; expect it to be lower for under-represented groups,
  children and people whose expressions differ from the stereotypes in the data.
- Class imbalance (happy is the largest class) is countered with class weights, but happy remains the easiest class.
{notes}"""


def _counts(counts: dict[str, int] | None) -> str:
    return ", ".join(f"{c} {n}" for c, n in (counts or {}).items())


def write_model_card(model_dir: str | os.PathLike, notes: str = "") -> Path:
    """Write ``MODEL_CARD.md`` from the ``metrics.json`` in ``model_dir``."""
    model_dir = Path(model_dir)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    path = model_dir / "MODEL_CARD.md"
    with atomic_path(path) as tmp:
        tmp.write_text(model_card(metrics, notes))
        os.chmod(tmp, 0o644)
    return path
