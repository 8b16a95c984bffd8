"""Small Keras callbacks of the face-CNN training loop, one job each.

Used by :func:`emolib.face_train.train` in this order (each reads what the earlier ones found):
:class:`EpochValidation` (scores the validation split, records the history row),
:class:`KeepBest` (remembers the best epoch's weights and restores them at the end),
:class:`EpochLog` (progress bar per batch, one summary line per epoch on stderr),
:class:`EpochPlan` (the planned epoch count; with a time budget it is re-estimated and the
learning-rate decay rescaled), :class:`WeightAverage` (running mean of the last epochs' weights,
kept when validation says so) and :class:`EarlyStop`. This module imports Keras at import time:
only training imports it.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any

import keras
import numpy as np

from emolib.face_data import FaceSet, progress_bar
from emolib.face_model import predict_probabilities, score

__all__ = ["EarlyStop", "EpochLog", "EpochPlan", "EpochValidation", "KeepBest", "WeightAverage", "recompute_batchnorm",
           "validation_score"]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def validation_score(model, val: FaceSet) -> dict[str, Any]:
    """``score`` of ``model`` (a Keras model, no flip averaging) on the validation faces."""
    return score(val.y, predict_probabilities(lambda x: model(x, training=False), val.x, tta_flip=False), val.classes)


def monitored(res: dict[str, Any], monitor: str) -> float:
    """The number to maximise: macro-F1, or minus the loss."""
    return res["macro_f1"] if monitor == "val_macro_f1" else -res["loss"]


class EpochValidation(keras.callbacks.Callback):
    """Scores every epoch on ``val``; appends its row (train and validation figures, lr, seconds) to ``history``."""

    def __init__(self, val: FaceSet, history: dict[str, list]):
        super().__init__()
        self.val, self.history = val, history
        self.t0 = 0.0
        self.latest: dict[str, Any] = {}

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        train_seconds = time.perf_counter() - self.t0
        res = validation_score(self.model, self.val)
        lr = self.model.optimizer.learning_rate
        lr = float(lr.numpy() if hasattr(lr, "numpy") else lr)
        row = {"epoch": epoch + 1, "loss": float(logs.get("loss", float("nan"))),
               "accuracy": float(logs.get("accuracy", float("nan"))), "val_loss": res["loss"],
               "val_accuracy": res["accuracy"], "val_macro_f1": res["macro_f1"], "lr": lr,
               "seconds": train_seconds, "seconds_with_validation": time.perf_counter() - self.t0}
        for key, value in row.items():
            self.history.setdefault(key, []).append(value)
        logs.update({"val_macro_f1": res["macro_f1"], "val_loss": res["loss"], "val_accuracy": res["accuracy"]})
        self.latest = res


class KeepBest(keras.callbacks.Callback):
    """Remembers the weights of the epoch with the best ``monitor`` score; puts them back when training ends."""

    def __init__(self, validation: EpochValidation, monitor: str):
        super().__init__()
        self.validation, self.monitor = validation, monitor
        self.best, self.best_epoch, self.best_weights = -math.inf, -1, None
        self.wait = 0  # epochs since the last gain
        self.improved = False

    def on_epoch_end(self, epoch, logs=None):
        current = monitored(self.validation.latest, self.monitor)
        self.improved = current > self.best + 1e-4
        if self.improved:
            self.best, self.best_epoch, self.wait = current, epoch + 1, 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class EpochLog(keras.callbacks.Callback):
    """A progress bar per epoch (when ``bar``) and one summary line per epoch, on stderr."""

    def __init__(self, history: dict[str, list], keep_best: KeepBest, steps: int, epochs: int, bar: bool):
        super().__init__()
        self.history, self.keep_best, self.steps, self.epochs, self.show_bar = history, keep_best, steps, epochs, bar
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.show_bar:
            self.bar = progress_bar(total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", leave=True, unit="batch",
                                    mininterval=10.0 if not sys.stderr.isatty() else 0.5)

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None:
            self.bar.update(1)
            if logs and batch % 20 == 0:
                self.bar.set_postfix(loss=f"{float(logs.get('loss', 0)):.3f}",
                                     acc=f"{float(logs.get('accuracy', 0)):.3f}",
                                     refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        h = {k: v[-1] for k, v in self.history.items() if v}
        _say(f"epoch {epoch + 1}/{self.epochs}: loss {h['loss']:.4f} acc {h['accuracy']:.4f} | val loss "
             f"{h['val_loss']:.4f} acc {h['val_accuracy']:.4f} macro-F1 {h['val_macro_f1']:.4f} | "
             f"lr {h['lr']:.2e} | {h['seconds']:.0f}s{' *best*' if self.keep_best.improved else ''}")


class EpochPlan(keras.callbacks.Callback):
    """Stops after the planned number of epochs; with ``time_budget_s`` it re-plans after each epoch
    (as many as still fit, at most ``epochs``) and moves the end of the learning-rate decay (``total_steps``)
    to the new last epoch."""

    def __init__(self, history: dict[str, list], epochs: int, steps: int, total_steps=None,
                 time_budget_s: float | None = None):
        super().__init__()
        self.history, self.epochs, self.steps = history, epochs, steps
        self.total_steps, self.time_budget_s = total_steps, time_budget_s
        self.planned = epochs
        self.fit_start = 0.0

    def on_train_begin(self, logs=None):
        self.fit_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if self.time_budget_s and done < self.planned:
            elapsed = time.perf_counter() - self.fit_start
            recent = self.history["seconds_with_validation"][-3:]
            per_epoch = float(np.mean(recent[1:] if len(recent) > 1 else recent))
            fits = done + int(max(0.0, self.time_budget_s - elapsed) // per_epoch)
            planned = int(min(self.epochs, max(done, fits)))
            if planned != self.planned:
                _say(f"time budget {self.time_budget_s / 60:.0f} min at {per_epoch:.0f}s/epoch: {planned} epochs")
                self.planned = planned
                if self.total_steps is not None:
                    self.total_steps.assign(float(planned * self.steps))
        self.history.setdefault("planned_epochs", []).append(self.planned)
        if done >= self.planned:
            self.model.stop_training = True


class WeightAverage(keras.callbacks.Callback):
    """Running mean of the weights of the last ``last`` planned epochs. At the end the average (batch-norm
    statistics re-estimated on ``bn_x``) replaces the best epoch when, on validation, it beats the mean of
    the epochs it averages and trails the best by no more than their standard deviation (the best epoch's
    score is the highest of many noisy ones, so it flatters that epoch)."""

    def __init__(self, last: int, plan: EpochPlan, keep_best: KeepBest, val: FaceSet, history: dict[str, list],
                 monitor: str, bn_x: np.ndarray | None = None):
        super().__init__()
        self.last, self.plan, self.keep_best, self.val = last, plan, keep_best, val
        self.history, self.monitor, self.bn_x = history, monitor, bn_x
        self.avg: list[np.ndarray] | None = None
        self.epochs: list[int] = []
        self.average: dict[str, Any] | None = None  # the record for metrics.json
        self.alternative: list[np.ndarray] | None = None  # the weights not kept

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        if self.plan.planned - done < self.last:  # inside the averaging window: running mean
            weights = self.model.get_weights()
            if self.avg is None:
                self.avg = [w.astype(np.float64) for w in weights]
            else:
                n = len(self.epochs) + 1
                self.avg = [a + (w - a) / n for a, w in zip(self.avg, weights)]
            self.epochs.append(done)
        elif self.avg is not None:  # the time budget moved the end later: start the window again
            self.avg, self.epochs = None, []

    def on_train_end(self, logs=None):
        if self.avg is None or len(self.epochs) < 2:
            return
        self.model.set_weights(self.avg)
        if self.bn_x is not None and len(self.bn_x):
            recompute_batchnorm(self.model, self.bn_x)
        res = validation_score(self.model, self.val)
        window = [monitored({"macro_f1": self.history["val_macro_f1"][e - 1], "loss": self.history["val_loss"][e - 1]},
                            self.monitor) for e in self.epochs]
        typical, spread = float(np.mean(window)), float(np.std(window, ddof=1))
        best = self.keep_best.best
        chosen = monitored(res, self.monitor) >= typical and monitored(res, self.monitor) >= best - spread
        self.average = {"epochs": self.epochs, "val_accuracy": res["accuracy"], "val_macro_f1": res["macro_f1"],
                        "val_loss": res["loss"],
                        "epochs_val_mean": typical if self.monitor == "val_macro_f1" else -typical,
                        "epochs_val_sd": spread, "chosen": bool(chosen)}
        _say(f"weights averaged over epochs {self.epochs[0]}-{self.epochs[-1]}: val acc {res['accuracy']:.4f} "
             f"macro-F1 {res['macro_f1']:.4f} loss {res['loss']:.4f}: "
             f"{'kept' if chosen else f'best epoch {self.keep_best.best_epoch} kept instead'}")
        if chosen:
            self.alternative = self.keep_best.best_weights
        else:
            self.alternative = self.model.get_weights()
            self.model.set_weights(self.keep_best.best_weights)


class EarlyStop(keras.callbacks.Callback):
    """Stops after ``patience`` epochs without a gain (0: never)."""

    def __init__(self, keep_best: KeepBest, patience: int, monitor: str):
        super().__init__()
        self.keep_best, self.patience, self.monitor = keep_best, patience, monitor

    def on_epoch_end(self, epoch, logs=None):
        if self.patience and self.keep_best.wait >= self.patience:
            _say(f"early stopping: no {self.monitor} gain for {self.patience} epochs "
                 f"(best epoch {self.keep_best.best_epoch})")
            self.model.stop_training = True


def recompute_batchnorm(model, x: np.ndarray, batch_size: int = 128, max_batches: int = 40) -> None:
    """Re-estimate every batch-norm layer's moving mean and variance for ``model``'s current weights
    (needed after averaging weights, whose statistics no single epoch saw): the plain mean over
    forward passes in training mode on up to ``max_batches`` batches of the (N, 48, 48) crops ``x``."""
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
