"""The face-emotion CNN: build it (Keras, for training), export it to ONNX, load it, predict, evaluate.

Run time (photo -> music, ``emolib faces predict``) uses :func:`load_face_model`, which reads the
ONNX export with onnxruntime and never imports TensorFlow or Keras. Training and evaluation of a
``.keras`` file use :func:`load_keras_model`. Both give a :class:`FaceModel`: ``.classes`` and
``.predict(crops)`` (one probability per class) with the same preprocessing and flip averaging.
The class list and preprocessing travel inside both files (the Keras input layer's config; the
ONNX file's ``emolib`` metadata entry), so a model file is self-describing.
"""
from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emolib.errors import EmolibError
from emolib.face_data import is_zip_tree, load_faces
from emolib.faces import INPUT_SIZE, find_faces, load_image
from emolib.files import atomic_path
from emolib.paths import MODELS_DIR

__all__ = ["CONV_WIDTHS", "DEFAULT_MODEL", "DEFAULT_MODEL_DIR", "DEFAULT_ONNX", "DENSE_WIDTHS", "EXPORT_COMMAND",
           "FaceModel", "build_face_cnn", "conv_counts", "evaluate_dir", "export_onnx", "face_input_layer",
           "load_face_model", "load_keras_model", "predict_probabilities", "preprocessing_record", "require_exporter",
           "score"]

#: The shipped model: its folder, the Keras file (training) and its ONNX export (run time).
DEFAULT_MODEL_DIR = MODELS_DIR / "face"
DEFAULT_MODEL = DEFAULT_MODEL_DIR / "model.keras"
DEFAULT_ONNX = DEFAULT_MODEL_DIR / "model.onnx"
#: How the shipped ONNX file was made from the shipped Keras file (recorded in its metrics.json and card).
EXPORT_COMMAND = "python -m emolib faces export emolib/models/face"
#: Default widths (measured to fit a 2-core CPU; see the model card).
CONV_WIDTHS = (32, 64, 128, 192, 256)
DENSE_WIDTHS = (256, 128, 128, 64, 64)
#: Key of the ONNX metadata entry holding the classes and preprocessing (JSON).
_ONNX_META_KEY = "emolib"


# =========================================================================== build (Keras)
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


def build_face_cnn(classes: Sequence[str], conv_widths: Sequence[int] = CONV_WIDTHS,
                   dense_widths: Sequence[int] = DENSE_WIDTHS, convs_per_block: int | Sequence[int] | None = None,
                   conv_dropout: float = 0.1, dense_dropout: float = 0.0, tta_flip: bool = True,
                   bn_momentum: float = 0.99, dense_batchnorm: bool = True):
    """The 5+5-layer Keras CNN: 5 blocks of (conv + BN + ReLU) x convs_per_block + max-pool + dropout,
    then 5 dense hidden layers (dense + BN + ReLU + dropout), then softmax over ``classes``.

    ``convs_per_block``: one number for every block or one per block; None (the default): one
    convolution in the first block (48x48, where a second one would double the cost) and two in each later one.
    Any number of blocks/layers works; 5 and 5 are the original's shape and the default.
    ``bn_momentum`` below 0.99 lets very short runs (tests, smoke runs) settle their batch-norm statistics.
    """
    import keras
    from keras import layers

    face_input = _layers()["FaceInput"]
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1), name="face")
    x = face_input(classes=classes, preprocessing=preprocessing_record(tta_flip), name="face_input")(inputs)
    for b, (width, convs) in enumerate(zip(conv_widths, conv_counts(convs_per_block, conv_widths)), 1):
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


def conv_counts(convs_per_block: int | Sequence[int] | None, conv_widths: Sequence[int]) -> list[int]:
    """Convolutions in each block: one number for all blocks, one per block, or None for 1, 2, 2, ..."""
    if convs_per_block is None:
        return [1] + [2] * (len(conv_widths) - 1)
    counts = [convs_per_block] * len(conv_widths) if isinstance(convs_per_block, int) else list(convs_per_block)
    if len(counts) != len(conv_widths) or min(counts, default=1) < 1:
        raise EmolibError(f"convs_per_block {convs_per_block!r} must be a number >= 1 or one per conv block "
                          f"({len(conv_widths)})")
    return [int(c) for c in counts]


def face_input_layer(keras_model):
    """The model's FaceInput layer (holds classes and preprocessing), or None."""
    face_input = _layers()["FaceInput"]
    return next((layer for layer in keras_model.layers if isinstance(layer, face_input)), None)


# =========================================================================== predict
def predict_probabilities(call: Callable, x: np.ndarray, tta_flip: bool, batch_size: int = 512) -> np.ndarray:
    """Probabilities for (N, 48, 48) uint8 crops from ``call`` (float32 (B, 48, 48, 1) 0-255 -> (B, C)),
    batched; with flip test-time augmentation (the mean over the crop and its mirror image) if asked."""
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size, :, :, None].astype(np.float32)
        if tta_flip:
            p = np.asarray(call(np.concatenate([xb, xb[:, :, ::-1]], axis=0)))
            p = (p[:len(xb)] + p[len(xb):]) / 2.0
        else:
            p = np.asarray(call(xb))
        out.append(p)
    return np.concatenate(out)


class FaceModel:
    """A loaded face-emotion model: ``classes``, ``predict`` on crops and ``predict_photo`` on photos.

    ``call`` maps a float32 (B, 48, 48, 1) batch of 0-255 pixels to (B, C) probabilities; it is an
    onnxruntime session (:func:`load_face_model`) or a Keras model (:func:`load_keras_model`).
    """

    def __init__(self, call: Callable[[np.ndarray], np.ndarray], classes: Sequence[str],
                 preprocessing: dict[str, Any] | None = None, path: Path | None = None, keras_model: Any = None):
        self._call = call
        self.classes: tuple[str, ...] = tuple(classes)
        self.preprocessing: dict[str, Any] = dict(preprocessing or {})
        self.tta_flip: bool = bool(self.preprocessing.get("tta_flip", False))
        self.path = path
        #: The Keras model (None for an ONNX model): for continuing training and inspection.
        self.keras_model = keras_model

    def __repr__(self) -> str:
        kind = "keras" if self.keras_model is not None else "onnx"
        return f"FaceModel({kind}, classes={self.classes}, path={str(self.path) if self.path else None!r})"

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
        return predict_probabilities(self._call, crops, self.tta_flip, batch_size).astype(np.float32)

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


# =========================================================================== load
_CACHE: dict[str, FaceModel] = {}


def forget_cached(path: str | os.PathLike) -> None:
    """Drop ``path``'s model from the per-process cache (after a training run replaced it)."""
    _CACHE.pop(str(Path(path).resolve()), None)


def _onnx_path(path: str | os.PathLike | None) -> Path:
    """The ONNX file for ``path``: None = the shipped one; a folder = its model.onnx; x.keras = x.onnx beside it."""
    if path is None:
        return DEFAULT_ONNX
    path = Path(path)
    if path.is_dir():
        return path / "model.onnx"
    return path.with_suffix(".onnx") if path.suffix == ".keras" else path


def load_face_model(path: str | os.PathLike | None = None) -> FaceModel:
    """Load the run-time face model (ONNX, onnxruntime; no TensorFlow). Cached per process.

    Parameters
    ----------
    path : str, os.PathLike or None
        An ``.onnx`` file, a model folder (its ``model.onnx``), or a ``.keras`` file (the ``.onnx``
        export beside it); None: the shipped model.

    Returns
    -------
    model : FaceModel
        ``model.classes`` and ``model.predict(crops)``: class probabilities, one row per
        48x48 face crop.

    Raises
    ------
    EmolibError
        Naming the file, when it is missing or not a loadable ONNX face model.
    """
    path = _onnx_path(path)
    key = str(path.resolve())
    if key in _CACHE:
        return _CACHE[key]
    if not path.is_file():
        hint = (" (the shipped model is missing: reinstall emolib)" if path == DEFAULT_ONNX
                else f" (export it: python -m emolib faces export {path.parent})")
        raise EmolibError(f"ONNX face model not found{hint}", path)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    threads = os.environ.get("OMP_NUM_THREADS", "")  # onnxruntime ignores it; `emolib app` kernels set it to 1
    if threads.isdigit() and int(threads) > 0:
        options.intra_op_num_threads = int(threads)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = json.loads(session.get_modelmeta().custom_metadata_map.get(_ONNX_META_KEY, "{}"))
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise EmolibError(f"not a loadable ONNX face model ({type(err).__name__}: {first})", path) from None
    classes = meta.get("classes")
    n_out = session.get_outputs()[0].shape[-1]
    if not classes or (isinstance(n_out, int) and n_out != len(classes)):
        raise EmolibError("the ONNX model does not record its class names (export it with emolib)", path)
    input_name = session.get_inputs()[0].name

    def call(x: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: x})[0]

    model = FaceModel(call, classes, meta.get("preprocessing"), path)
    _CACHE[key] = model
    return model


def load_keras_model(path: str | os.PathLike | None = None) -> FaceModel:
    """Load a ``.keras`` face model (Keras safe mode) for training or evaluation; None = the shipped one. Cached."""
    path = Path(path) if path is not None else DEFAULT_MODEL
    key = str(path.resolve())
    if key in _CACHE:
        return _CACHE[key]
    if not path.is_file():
        hint = " (the shipped model is missing: reinstall emolib)" if path == DEFAULT_MODEL else ""
        raise EmolibError(f"model file not found{hint}", path)
    import keras

    _layers()
    try:
        keras_model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as err:
        raise EmolibError(f"not a loadable .keras face model ({type(err).__name__}: {err})", path) from None
    model = _wrap_keras(keras_model, path)
    _CACHE[key] = model
    return model


def _wrap_keras(keras_model, path: Path | None = None) -> FaceModel:
    """A FaceModel around a Keras model; classes from its input layer (else metrics.json beside it)."""
    import tensorflow as tf

    layer = face_input_layer(keras_model)
    classes = tuple(layer.classes) if layer is not None and layer.classes else None
    meta = dict(layer.preprocessing) if layer is not None else {}
    if classes is None and path is not None and (path.parent / "metrics.json").is_file():
        classes = tuple(json.loads((path.parent / "metrics.json").read_text())["classes"])
    n_out = int(keras_model.output_shape[-1])
    if classes is None or len(classes) != n_out:
        raise EmolibError(f"the model does not record its {n_out} class names", path)
    fn = tf.function(lambda x: keras_model(x, training=False), reduce_retracing=True)
    return FaceModel(fn, classes, meta, path, keras_model=keras_model)


# =========================================================================== export
def require_exporter() -> None:
    """Raise a clear EmolibError unless the ONNX exporter (the ``train`` extra) is installed.

    Training calls it first, so a missing exporter stops a run before it trains, not after.
    """
    try:
        import onnx  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as err:
        raise EmolibError(f"exporting the face CNN to ONNX needs tf2onnx and onnx ({err.name} is missing): "
                          "pip install 'emolib[train]'") from None


def export_onnx(model: Any, onnx_path: str | os.PathLike) -> Path:
    """Export a Keras face model (a ``.keras`` path, a FaceModel or a keras.Model) to ``onnx_path``, atomically.

    Uses Keras 3's exporter (tf2onnx underneath; a training-time extra). The classes and
    preprocessing go into the ONNX metadata so :func:`load_face_model` needs nothing else.
    """
    require_exporter()
    import onnx

    if isinstance(model, (str, os.PathLike)):
        model = load_keras_model(model)
    keras_model = model.keras_model if isinstance(model, FaceModel) else model
    layer = face_input_layer(keras_model)
    classes = list(model.classes) if isinstance(model, FaceModel) else list(layer.classes if layer else [])
    if not classes:
        raise EmolibError("the model does not record its class names: cannot export it")
    meta = {"classes": classes, "preprocessing": dict(layer.preprocessing) if layer is not None else {}}
    keras_model(np.zeros((1, INPUT_SIZE, INPUT_SIZE, 1), np.float32))  # the exporter needs a called model
    onnx_path = Path(onnx_path)
    with atomic_path(onnx_path) as tmp:
        keras_model.export(str(tmp), format="onnx", verbose=False)
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key, entry.value = _ONNX_META_KEY, json.dumps(meta)
        onnx.save(proto, str(tmp))
        os.chmod(tmp, 0o644)
    forget_cached(onnx_path)
    return onnx_path


# =========================================================================== evaluate
def score(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, mean NLL, per-class precision/recall/F1/support, confusion matrix (rows = truth)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(classes)))
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, int)
    p, r, f, s = precision_recall_fscore_support(y_true, pred, labels=labels, zero_division=0)
    cm = confusion_matrix(y_true, pred, labels=labels)
    eps = 1e-7
    picked = probs[np.arange(len(y_true)), y_true]
    nll = float(-np.mean(np.log(np.clip(picked, eps, 1.0)))) if len(y_true) else float("nan")
    return {
        "n": len(y_true),
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


def _scored_classes(root: Path, split: str | None,
                    classes: Sequence[str]) -> tuple[Path, str | None, list[str], list[str]]:
    """(root, split, classes present to score, folders ignored) for :func:`evaluate_dir`."""
    if is_zip_tree(root, classes) and split is None:
        split = "test"
    if split is not None and not is_zip_tree(root, classes):
        if not (root / split).is_dir():
            raise EmolibError(f"no {split}/ folder", root)
        root, split = root / split, None
    if split is not None:
        present = sorted(p.stem for p in root.glob("*.zip"))
    else:
        present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    used = [c for c in classes if c in present]
    if not used:
        hint = " (pass split='test' / --split test)" if {"train", "test"} & set(present) else ""
        raise EmolibError(f"no subfolder named for the model's classes {list(classes)} (found {present}){hint}", root)
    return root, split, used, [c for c in present if c not in classes]


def evaluate_dir(dir: str | os.PathLike, model: FaceModel | str | os.PathLike | None = None, *,
                 split: str | None = None, limit_per_class: int | None = None, seed: int = 0,
                 batch_size: int = 512, progress: bool = False) -> dict[str, Any]:
    """Score a model on dataset faces (already cropped: no detection), preprocessed exactly as in training.

    ``model``: a FaceModel, a ``.keras`` path (Keras), another path (ONNX, :func:`load_face_model`)
    or None (the shipped ONNX model). ``dir`` holds ``<class>/`` folders, or ``<split>/<class>/``
    folders, or FER2013's ``<class>.zip`` files (``split`` defaults to ``test`` then). Only folders
    named for one of the model's classes are scored; others are listed under ``ignored``. Returns
    n, accuracy, macro-F1, per-class recall/precision/F1/support and the confusion matrix.
    Unreadable images are skipped and listed (with the reason) under ``skipped``.
    """
    if not isinstance(model, FaceModel):
        model = (load_keras_model(model) if model is not None and Path(model).suffix == ".keras"
                 else load_face_model(model))
    root = Path(dir)
    if not root.is_dir():
        raise EmolibError("folder not found", root)
    root, split, used, ignored = _scored_classes(root, split, model.classes)
    faces = load_faces(root, split, used, limit_per_class=limit_per_class, seed=seed, strict=False, progress=progress)
    # Labels are indices into the model's classes, even when some classes are absent.
    y = np.asarray([model.classes.index(used[i]) for i in faces.y], dtype=np.int64)
    res = score(y, model.predict(faces.x, batch_size=batch_size), model.classes)
    res.pop("loss")
    return {"dir": str(Path(dir)), "split": split, "model": str(model.path) if model.path else None, **res,
            "missing_classes": [c for c in model.classes if c not in used], "ignored": ignored,
            "skipped": faces.skipped}
