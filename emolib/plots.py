"""Every figure: faces, probabilities, piano rolls, training curves and confusion matrices.

Each function returns a matplotlib Figure (drawn with the non-interactive Agg canvas, so it works
headless); ``png_bytes`` turns one into PNG bytes for widgets and files.
"""
from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["confusion_heatmap", "face_cnn_curves", "note_lstm_curves", "photo_with_faces", "piano_roll",
           "png_bytes", "probability_bars", "save_face_plots"]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def png_bytes(fig, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def photo_with_faces(image: np.ndarray, faces: Iterable, labels: Iterable[str] | None = None):
    """The photo with a box around each face (the deciding, largest face in red)."""
    from matplotlib.patches import Rectangle

    fig = _figure(4, 4)
    ax = fig.add_subplot()
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
    labels = list(labels) if labels is not None else []
    for i, face in enumerate(faces):
        x, y, w, h = face.box
        color = "red" if i == 0 else "yellow"
        ax.add_patch(Rectangle((x, y), w, h, fill=False, lw=3, ls="-" if face.found else "--", color=color))
        text = labels[i] if i < len(labels) else ("" if face.found else "no face found: whole image")
        if text:
            ax.text(x, max(y - 4, 0), text, color=color, fontsize=16, fontweight="bold", va="bottom",
                    bbox={"facecolor": "black", "alpha": 0.6, "pad": 2, "lw": 0})
    ax.set_axis_off()
    return fig


def probability_bars(probabilities: Mapping[str, float], chosen: str | None = None):
    """Horizontal bars of class probabilities, the chosen class highlighted."""
    fig = _figure(4, 0.45 * len(probabilities) + 0.8)
    ax = fig.add_subplot()
    names = list(probabilities)
    values = [float(probabilities[n]) for n in names]
    colors = ["tab:red" if n == chosen else "tab:gray" for n in names]
    ax.barh(names, values, color=colors)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    for i, v in enumerate(values):
        ax.text(min(v + 0.02, 0.85), i, f"{v:.0%}", va="center")
    ax.set_xlabel("probability")
    return fig


def piano_roll(midi, title: str = "", seconds: float | None = None, ax=None):
    """Notes as horizontal bars: time on x, MIDI pitch on y, velocity as colour."""
    fig = None
    if ax is None:
        fig = _figure(8, 3)
        ax = fig.add_subplot()
    notes = [n for inst in midi.instruments if not inst.is_drum for n in inst.notes]
    if notes:
        import matplotlib as mpl

        cmap = mpl.colormaps["viridis"]
        for n in notes:
            ax.plot([n.start, n.end], [n.pitch, n.pitch], lw=3, solid_capstyle="butt", color=cmap(n.velocity / 127))
        pitches = [n.pitch for n in notes]
        ax.set_ylim(min(pitches) - 2, max(pitches) + 2)
    ax.set_xlim(0, seconds or max(midi.get_end_time(), 1e-3))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title)
    return fig if fig is not None else ax.figure


def note_lstm_curves(history: Mapping[str, Sequence[float]], title: str = "loss per note"):
    """A note LSTM's training loss (augmented songs) and validation NLL per note, by epoch."""
    fig = _figure(6, 3.2)
    ax = fig.add_subplot()
    epochs = range(1, len(history["loss"]) + 1)
    ax.plot(epochs, history["loss"], "-", label="training (augmented)")
    ax.plot(epochs, history["val_nll"], "--", label="validation songs")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per note")
    ax.set_title(title)
    ax.legend()
    return fig


def face_cnn_curves(history: Mapping[str, Sequence[float]], loss_note: str = ""):
    """Training curves (loss, accuracy, validation macro-F1, learning rate) as a matplotlib Figure.

    ``loss_note`` (e.g. :func:`emolib.model_card.loss_description`) says how the training loss was weighted, since
    it is not comparable with the unweighted validation loss beside it.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.6), layout="constrained")
    axes = fig.subplots(1, 4)
    epochs = history.get("epoch", [])
    panels = [(axes[0], ("loss", "val_loss"), "loss"), (axes[1], ("accuracy", "val_accuracy"), "accuracy"),
              (axes[2], ("val_macro_f1",), "validation macro-F1"), (axes[3], ("lr",), "learning rate")]
    for ax, keys, title in panels:
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


def confusion_heatmap(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str = "confusion matrix"):
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


def save_face_plots(metrics: Mapping[str, Any], folder: str | os.PathLike) -> list[Path]:
    """Write ``curves.png`` and ``confusion.png`` for a face training run's metrics into ``folder``, atomically."""
    from emolib.files import atomic_path
    from emolib.model_card import loss_description

    folder = Path(folder)
    written = []
    if metrics.get("history"):
        fig = face_cnn_curves(metrics["history"], loss_description(metrics.get("parameters", {})))
        with atomic_path(folder / "curves.png") as tmp:
            fig.savefig(tmp, dpi=110)
        written.append(folder / "curves.png")
    fig = confusion_heatmap(metrics["confusion_matrix"], metrics["classes"],
                         title=f"{metrics.get('scored_on', '')} split: accuracy {metrics['accuracy']:.3f}, "
                               f"macro-F1 {metrics['macro_f1']:.3f}")
    with atomic_path(folder / "confusion.png") as tmp:
        fig.savefig(tmp, dpi=110)
    written.append(folder / "confusion.png")
    return written
