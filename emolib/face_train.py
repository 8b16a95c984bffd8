"""Training the face-emotion CNN: the recipe as a frozen dataclass, and ``train(data, out, config)``.

Training reads FER2013's per-class zips or any ``train/<class>/`` image-folder tree
(:mod:`emolib.face_data`), balances the classes, augments, follows a cosine learning-rate
schedule, keeps the best epoch on validation macro-F1 (:mod:`emolib.face_callbacks`), and writes
``model.keras`` and its ONNX export ``model.onnx`` atomically, with ``metrics.json`` (which stores
the recipe), plots and the model card beside them. ``emolib faces train`` has one flag per field of
:class:`FaceTrainConfig`. Importing this module is light: TensorFlow/Keras load inside :func:`train`.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emolib import FACE_CLASSES, FER_CLASSES, TRAIN_PRECISIONS
from emolib.errors import EmolibError
from emolib.face_data import (
    FaceSet,
    check_classes,
    load_faces,
    make_train_dataset,
    stratified_split,
)
from emolib.face_model import (
    CONV_WIDTHS,
    DENSE_WIDTHS,
    build_face_cnn,
    conv_counts,
    export_onnx,
    forget_cached,
    load_keras_model,
    predict_probabilities,
    preprocessing_record,
    require_exporter,
    score,
)
from emolib.files import atomic_path, write_json
from emolib.paths import data_root

__all__ = ["FaceTrainConfig", "config_from", "train"]


def _opt(help: str, **cli: Any) -> Any:
    """Field metadata: the help text of its ``emolib faces train`` flag, plus argparse overrides.

    ``flag`` names the documented flag when it is not ``--field-name`` (the melody commands' spelling:
    ``--minutes``, ``--max-files``); ``aliases`` are older spellings, still accepted."""
    return {"help": help, "cli": cli}


_WIDTHS = {"type": int, "nargs": "+", "metavar": "N"}


@dataclass(frozen=True)
class FaceTrainConfig:
    """One training recipe of the face CNN; the defaults made the shipped model (see its card)."""

    classes: tuple[str, ...] = field(default=FACE_CLASSES, metadata=_opt(
        "classes to learn", nargs="+", choices=FER_CLASSES, metavar="CLASS"))
    epochs: int = field(default=40, metadata=_opt("upper bound; early stopping or the time budget may end sooner"))
    seed: int = field(default=0, metadata=_opt("seed of the split, sampling, initialisation and augmentation"))
    batch_size: int = field(default=64, metadata=_opt("faces per batch"))
    limit_per_class: int | None = field(default=None, metadata=_opt(
        "at most this many training images per class", type=int, metavar="N", flag="--max-files",
        aliases=["--limit"]))
    strategy: str = field(default="default", metadata=_opt(
        "tf.distribute strategy: default, mirrored, multiworker, onedevice:/gpu:0"))
    val_fraction: float = field(default=0.1, metadata=_opt("share of train held out to choose the epoch"))
    conv_widths: tuple[int, ...] = field(default=CONV_WIDTHS, metadata=_opt(
        "filters of each convolutional block (5 = the original's shape)", **_WIDTHS))
    dense_widths: tuple[int, ...] = field(default=DENSE_WIDTHS, metadata=_opt(
        "units of each fully connected hidden layer (5 = the original's shape)", **_WIDTHS))
    convs_per_block: int | tuple[int, ...] | None = field(default=None, metadata=_opt(
        "3x3 convolutions in each block: one number for all, or one per block (default: 1 2 2 2 2)", **_WIDTHS))
    conv_dropout: float = field(default=0.1, metadata=_opt("dropout after each convolutional block"))
    dense_dropout: float = field(default=0.0, metadata=_opt(
        "dropout after each dense layer (even 0.1 stalls the 5-deep head early: see the model card)"))
    bn_momentum: float = field(default=0.99, metadata=_opt("batch-norm momentum (lower settles very short runs)"))
    learning_rate: float = field(default=1e-3, metadata=_opt(
        "peak learning rate (warm-up, then cosine decay)", aliases=["--lr"]))
    weight_decay: float = field(default=0.02, metadata=_opt("AdamW decoupled weight decay"))
    label_smoothing: float = field(default=0.0, metadata=_opt("cross-entropy label smoothing (0: none)"))
    warmup_epochs: float = field(default=1.0, metadata=_opt("learning-rate warm-up length (0 when continuing)"))
    balance: str = field(default="weights", metadata=_opt(
        "class imbalance: per-sample class weights, balanced sampling, or none",
        choices=["weights", "sampling", "none"]))
    augment: bool | dict = field(default=True, metadata=_opt(
        "flip, rotate, shift, zoom, brightness and contrast (Python: a dict overrides face_data.AUGMENT_DEFAULTS)"))
    monitor: str = field(default="val_macro_f1", metadata=_opt(
        "validation score that picks the best epoch and drives early stopping", choices=["val_macro_f1", "val_loss"]))
    patience: int = field(default=10, metadata=_opt("early stopping after this many epochs without gain (0: never)"))
    tta_flip: bool = field(default=True, metadata=_opt("predict as the mean over the face and its mirror image"))
    evaluate_test: bool = field(default=True, metadata=_opt("score the test split when the data has one"))
    plots: bool = field(default=True, metadata=_opt("write curves.png and confusion.png"))
    time_budget_min: float | None = field(default=None, metadata=_opt(
        "stop within about this many minutes of training (epochs re-planned, LR decay rescaled)",
        type=float, metavar="MIN", flag="--minutes", aliases=["--time-budget"]))
    init_model: str | None = field(default=None, metadata=_opt(
        "continue training this .keras model (same classes and widths) instead of starting afresh",
        metavar="MODEL", aliases=["--init"]))
    threads: int | None = field(default=None,
                                metadata=_opt("CPU threads for TensorFlow (default: all cores)", type=int))
    precision: str = field(default="float32", metadata=_opt(
        "training precision; mixed_bfloat16 is ~1.4x faster on CPUs with AMX/AVX-512 bf16 (the saved model is "
        "float32 either way)", choices=list(TRAIN_PRECISIONS)))
    average_last: int = field(default=0, metadata=_opt(
        "also average the weights of the last N epochs; kept unless validation says it is worse than the best "
        "epoch (0: off)", metavar="N"))

    def __post_init__(self) -> None:
        """Lists become tuples (a frozen recipe), one convs_per_block number stays a number; bad values fail early."""
        set_ = functools.partial(object.__setattr__, self)
        set_("classes", check_classes(self.classes))
        set_("conv_widths", tuple(int(w) for w in self.conv_widths))
        set_("dense_widths", tuple(int(w) for w in self.dense_widths))
        convs = self.convs_per_block
        if convs is not None and not isinstance(convs, int):
            convs = tuple(int(c) for c in convs)
            set_("convs_per_block", convs[0] if len(convs) == 1 else convs)
        if self.init_model is not None:
            set_("init_model", str(self.init_model))
        if self.monitor not in ("val_macro_f1", "val_loss"):
            raise EmolibError(f"unknown monitor {self.monitor!r}: use val_macro_f1 or val_loss")
        if self.epochs < 1 or self.batch_size < 1:
            raise EmolibError("epochs and batch_size must be at least 1")
        if self.average_last < 0 or self.average_last == 1:
            raise EmolibError(f"average_last must be 0 (off) or at least 2 epochs, not {self.average_last}")
        if self.precision not in TRAIN_PRECISIONS:
            raise EmolibError(f"unknown precision {self.precision!r}: use one of {', '.join(TRAIN_PRECISIONS)}")
        if self.balance not in ("weights", "sampling", "none"):
            raise EmolibError(f"unknown balance {self.balance!r}: use weights, sampling or none")

    def as_json(self) -> dict[str, Any]:
        """The recipe as JSON-ready values (tuples as lists), as metrics.json stores it."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def config_from(base: FaceTrainConfig | None = None, **changes: Any) -> FaceTrainConfig:
    """``base`` (default: the shipped recipe) with the given fields changed; unknown fields are an error."""
    base = base or FaceTrainConfig()
    unknown = set(changes) - {f.name for f in dataclasses.fields(FaceTrainConfig)}
    if unknown:
        raise EmolibError(f"unknown face training setting(s): {', '.join(sorted(unknown))}")
    return dataclasses.replace(base, **changes)


# =========================================================================== train
@dataclass
class _Splits:
    root: Path
    train: FaceSet
    val: FaceSet
    test: FaceSet | None


def _load_splits(data: str | os.PathLike | None, config: FaceTrainConfig, progress: bool) -> _Splits:
    """Train and validation (a stratified, seeded share of train) and, if asked and present, test faces."""
    root = Path(data) if data is not None else data_root() / "fer2013"
    full = load_faces(root, "train", config.classes, limit_per_class=config.limit_per_class, seed=config.seed,
                      progress=progress)
    keep, held = stratified_split(full.y, config.val_fraction, config.seed)
    test = None
    if config.evaluate_test:
        try:
            test = load_faces(root, "test", config.classes, seed=config.seed, progress=progress)
        except EmolibError as err:
            print(f"emolib: no test split scored ({err})", file=sys.stderr)
    if len(held) == 0:
        raise EmolibError("too few training images to carve a validation split", root)
    return _Splits(root, full.subset(keep), full.subset(held), test)


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


def _new_model(config: FaceTrainConfig):
    """A freshly initialised CNN of the recipe's shape."""
    return build_face_cnn(config.classes, config.conv_widths, config.dense_widths, config.convs_per_block,
                          config.conv_dropout, config.dense_dropout, config.tta_flip, config.bn_momentum)


def _init_from(model, init_model: str, classes: tuple[str, ...]) -> dict[str, Any]:
    """Copy a trained model's weights into ``model``; what metrics.json records about it."""
    init = load_keras_model(init_model)
    if tuple(init.classes) != classes:
        raise EmolibError(f"init model classes {list(init.classes)} differ from {list(classes)}", init_model)
    try:
        model.set_weights(init.keras_model.get_weights())
    except ValueError as err:
        raise EmolibError(f"init model has other widths than this run ({err})", init_model) from None
    info: dict[str, Any] = {"path": str(init_model)}
    init_metrics = Path(init_model).parent / "metrics.json"
    if init_metrics.is_file():
        prev = json.loads(init_metrics.read_text())
        info.update({k: prev.get(k) for k in ("command", "epochs_run", "best_epoch", "train_seconds",
                                             "seconds_per_epoch", "accuracy", "macro_f1", "scored_on")})
    return info


def _compiled_model(config: FaceTrainConfig, strat, steps: int, total_steps) -> tuple[Any, dict | None]:
    """The model to fit (inside ``strat``'s scope), from scratch or ``init_model``, compiled; and the init record."""
    import keras

    with strat.scope():
        model = _new_model(config)
        init_info = _init_from(model, config.init_model, config.classes) if config.init_model is not None else None
        schedule = _cosine_schedule(config.learning_rate, int(round(config.warmup_epochs * steps)), total_steps)
        model.compile(optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                      metrics=["accuracy"], jit_compile=False)
    return model, init_info


def _callbacks(config: FaceTrainConfig, splits: _Splits, history: dict, steps: int, total_steps, progress: bool):
    """The training loop's callbacks, in the order they must run (see :mod:`emolib.face_callbacks`)."""
    from emolib import face_callbacks as cb

    validation = cb.EpochValidation(splits.val, history)
    keep_best = cb.KeepBest(validation, config.monitor)
    budget = config.time_budget_min * 60.0 if config.time_budget_min else None
    plan = cb.EpochPlan(history, config.epochs, steps, total_steps, budget)
    average = None
    if config.average_last:  # batch-norm statistics of averaged weights are re-estimated on training faces
        train_x = splits.train.x
        bn_x = train_x[np.sort(np.random.default_rng(config.seed).permutation(len(train_x))[:5120])]
        average = cb.WeightAverage(config.average_last, plan, keep_best, splits.val, history, config.monitor, bn_x)
    return [validation, keep_best, cb.EpochLog(history, keep_best, steps, config.epochs, progress), plan,
            *([average] if average else []), cb.EarlyStop(keep_best, config.patience, config.monitor)]


@dataclass
class _Fitted:
    model: Any  # the float32 Keras model with the kept weights
    callbacks: list
    history: dict[str, list]
    seconds: float
    strategy: Any
    init: dict[str, Any] | None


def _fit(config: FaceTrainConfig, splits: _Splits, progress: bool) -> _Fitted:
    """Fit the CNN in ``config.precision`` inside the recipe's distribution strategy."""
    import keras
    import tensorflow as tf

    from emolib.runs import get_strategy

    strat = get_strategy(config.strategy)
    if config.time_budget_min and strat.extended._in_multi_worker_mode():
        raise EmolibError("time_budget_min needs one worker (each worker would time itself): give epochs instead")
    steps = math.ceil(len(splits.train) / config.batch_size)
    total_steps = tf.Variable(float(config.epochs * steps), trainable=False, dtype=tf.float32)
    ds = make_train_dataset(splits.train, config.batch_size, config.seed, balance=config.balance,
                            augment=(config.augment if isinstance(config.augment, dict)
                                     else ({} if config.augment else None)))
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.precision)
    history: dict[str, list] = {}
    try:
        model, init_info = _compiled_model(config, strat, steps, total_steps)
        callbacks = _callbacks(config, splits, history, steps, total_steps, progress)
        print(f"training {model.count_params():,} parameters on {len(splits.train)} faces ({splits.train.counts()}), "
              f"validating on {len(splits.val)}, {steps} batches/epoch, strategy {type(strat).__name__}",
              file=sys.stderr, flush=True)
        t_fit = time.perf_counter()
        model.fit(ds, epochs=config.epochs, verbose=0, callbacks=callbacks, shuffle=False)
        fit_seconds = time.perf_counter() - t_fit
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    if config.precision != "float32":  # ship float32 weights and layers: same predictions on any CPU or GPU
        with strat.scope():
            trained, model = model, _new_model(config)
            model.set_weights(trained.get_weights())
    return _Fitted(model, callbacks, history, fit_seconds, strat, init_info)


def _final_scores(model, config: FaceTrainConfig, splits: _Splits, average) -> dict[str, Any]:
    """Validation and test scores of the kept weights (test also without flip averaging, and for the record
    the test score of the weights not kept when averaging)."""
    def scores(faces: FaceSet, tta: bool) -> dict[str, Any]:
        return score(faces.y, predict_probabilities(lambda x: model(x, training=False), faces.x, tta), config.classes)

    test = splits.test if splits.test is not None and len(splits.test) else None
    out = {"val": scores(splits.val, config.tta_flip),
           "test": scores(test, config.tta_flip) if test is not None else None}
    out["test_without_tta"] = scores(test, False) if test is not None else None
    if test is not None and average is not None and average.average and average.alternative is not None:
        kept = model.get_weights()
        model.set_weights(average.alternative)
        other = scores(test, config.tta_flip)
        model.set_weights(kept)
        average.average["test_of_the_one_not_kept"] = {k: other[k] for k in ("accuracy", "macro_f1", "recall")}
    return out


def _save_model(model, out: Path) -> Path:
    """Save the ONNX export and architecture + weights without the optimizer state (a third of the size)
    beside it, each atomically, the export first (a failed export leaves the previous pair); returns the
    ONNX path."""
    import keras

    from emolib.face_model import _layers

    clean = keras.Model.from_config(model.get_config(), custom_objects=_layers())
    clean.set_weights(model.get_weights())
    onnx_path = export_onnx(clean, out.with_suffix(".onnx"))
    with atomic_path(out) as tmp:
        clean.save(tmp)
        os.chmod(tmp, 0o644)
    return onnx_path


def _python_command(config: FaceTrainConfig, data: Any, out: Path) -> str:
    """How to rerun this from Python: the fields that differ from the default recipe."""
    changed = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
               if getattr(config, f.name) != f.default}
    args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
    return f"emolib.face_train.train({str(data)!r}, {str(out)!r}, FaceTrainConfig({args}))"


def _metrics(config: FaceTrainConfig, data: Any, out: Path, splits: _Splits, fitted: _Fitted,
             scores: dict[str, Any], seconds: float, command: str | None) -> dict[str, Any]:
    """Everything metrics.json records about the run (the model card reads its numbers from it)."""
    import keras
    import tensorflow as tf

    from emolib.face_callbacks import KeepBest, WeightAverage

    best = next(c for c in fitted.callbacks if isinstance(c, KeepBest))
    average = next((c.average for c in fitted.callbacks if isinstance(c, WeightAverage)), None)
    headline = scores["test"] or scores["val"]
    epoch_seconds = fitted.history.get("seconds", [])
    recipe = config.as_json()
    test = splits.test
    return {
        "kind": "face_emotion_cnn", "model": out.name, "onnx": out.with_suffix(".onnx").name,
        "classes": list(config.classes), "scored_on": "test" if scores["test"] else "validation",
        **{k: headline[k] for k in ("accuracy", "macro_f1", "recall", "precision", "confusion_matrix")},
        **scores,
        "epochs_run": len(epoch_seconds), "epochs_planned": config.epochs, "best_epoch": best.best_epoch,
        "weight_average": average,
        "seconds_per_epoch": float(np.mean(epoch_seconds)) if epoch_seconds else None,
        "train_seconds": fitted.seconds, "total_seconds": seconds, "seed": config.seed,
        "data": {"source": str(splits.root), "train": splits.train.counts(), "val": splits.val.counts(),
                 "test": test.counts() if test is not None else None, "limit_per_class": config.limit_per_class},
        "architecture": {"conv_blocks": len(config.conv_widths), "conv_widths": list(config.conv_widths),
                         "convs_per_block": conv_counts(config.convs_per_block, config.conv_widths),
                         "dense_layers": len(config.dense_widths), "dense_widths": list(config.dense_widths),
                         "conv_dropout": config.conv_dropout, "dense_dropout": config.dense_dropout,
                         "parameters": int(fitted.model.count_params())},
        "preprocessing": preprocessing_record(config.tta_flip),
        "config": recipe,
        "parameters": {**recipe, "data": str(data) if data is not None else None, "out": str(out)},
        "strategy": type(fitted.strategy).__name__,
        "machine": {"cpus": os.cpu_count(), "tensorflow": tf.__version__, "keras": keras.__version__,
                    "load_average": os.getloadavg()[1] if hasattr(os, "getloadavg") else None},
        "model_bytes": out.stat().st_size, "onnx_bytes": out.with_suffix(".onnx").stat().st_size,
        "command": command or _python_command(config, data, out),
        "init_model": fitted.init,
        "history": fitted.history,
    }


def train(data: str | os.PathLike | None, out: str | os.PathLike, config: FaceTrainConfig | None = None, *,
          command: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train the face-emotion CNN on ``data`` with the recipe ``config`` and save it to ``out`` (``.keras``).

    Writes ``out``, its ONNX export (``.onnx`` beside it: what run time loads), ``metrics.json``,
    ``curves.png``, ``confusion.png`` and ``MODEL_CARD.md``, and returns the metrics: test-split scores
    when ``data`` has a test split (else validation scores), per-class precision/recall, confusion
    matrix, epochs, seconds per epoch, data counts, the architecture, the recipe and the exact
    ``command`` (default: the equivalent Python call). See :class:`FaceTrainConfig` for the recipe:
    best epoch on validation, early stopping, time budget, weight averaging, mixed precision,
    distribution strategy, continuing from ``init_model``.
    """
    config = config or FaceTrainConfig()
    require_exporter()  # before hours of training, not after
    out = Path(out)
    if out.suffix != ".keras":
        raise EmolibError("the model path must end in .keras", out)
    t_start = time.perf_counter()
    import keras
    import tensorflow as tf

    if config.threads:
        tf.config.threading.set_intra_op_parallelism_threads(config.threads)
        tf.config.threading.set_inter_op_parallelism_threads(config.threads)
    keras.utils.set_random_seed(config.seed)
    splits = _load_splits(data, config, progress)
    fitted = _fit(config, splits, progress)
    average = next((c for c in fitted.callbacks if type(c).__name__ == "WeightAverage"), None)
    scores = _final_scores(fitted.model, config, splits, average)
    _save_model(fitted.model, out)
    metrics = _metrics(config, data, out, splits, fitted, scores, time.perf_counter() - t_start, command)
    write_json(out.parent / "metrics.json", metrics)
    if config.plots:
        from emolib.plots import save_face_plots

        save_face_plots(metrics, out.parent)
    from emolib.model_card import write_model_card

    write_model_card(out.parent)
    forget_cached(out)
    forget_cached(out.with_suffix(".onnx"))
    return metrics
