"""Model cards written from templates (``emolib/templates/``) and the numbers in a run's ``metrics.json``.

The template holds the prose; this module only computes the values it shows (tables, targets met,
the training stages), so a card never states a number that metrics.json does not hold.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from emolib.files import atomic_path

__all__ = ["FACE_TEMPLATE", "TARGETS", "face_model_card", "loss_description", "write_model_card"]

#: The face model card's template.
FACE_TEMPLATE = Path(__file__).parent / "templates" / "face_model_card.md"
#: Targets of the shipped face model on FER2013's test split (issue #3).
TARGETS = {"accuracy": 0.75, "macro_f1": 0.72, "min_recall": 0.60, "model_mb": 15.0, "train_minutes_2_cpu": 90.0}


def loss_description(parameters: Mapping[str, Any]) -> str:
    """How the training loss was weighted, from a run's recorded parameters (for plots and the model card)."""
    smoothing = parameters.get("label_smoothing") or 0
    balance = {"weights": "class-weighted",
               "sampling": "classes sampled equally", "none": "unweighted"}.get(parameters.get("balance", "weights"))
    return "cross-entropy" + (f", label smoothing {smoothing:g}" if smoothing else "") + f", {balance}"


def _counts(counts: Mapping[str, int] | None) -> str:
    return ", ".join(f"{c} {n}" for c, n in (counts or {}).items())


def _result_tables(metrics: Mapping[str, Any], test: Mapping[str, Any], total_min: float) -> dict[str, str]:
    """The targets, per-class and confusion-matrix table rows."""
    classes = metrics["classes"]
    mb = metrics["model_bytes"] / 1e6
    min_recall = min(test["recall"].values())
    checks = [("accuracy", test["accuracy"], f">= {TARGETS['accuracy']}", test["accuracy"] >= TARGETS["accuracy"]),
              ("macro-F1", test["macro_f1"], f">= {TARGETS['macro_f1']}", test["macro_f1"] >= TARGETS["macro_f1"]),
              ("lowest class recall", min_recall, f">= {TARGETS['min_recall']}", min_recall >= TARGETS["min_recall"]),
              ("model file (MB)", mb, f"<= {TARGETS['model_mb']:.0f}", mb <= TARGETS["model_mb"]),
              ("training time (min)", total_min, f"<= {TARGETS['train_minutes_2_cpu']:.0f} on 2 CPU cores",
               total_min <= TARGETS["train_minutes_2_cpu"])]
    cm = test["confusion_matrix"]
    return {
        "target_rows": "\n".join(f"| {name} | {value:.3f} | {target} | {'yes' if ok else '**no**'} |"
                                 for name, value, target, ok in checks),
        "per_class_rows": "\n".join(f"| {c} | {test['precision'][c]:.3f} | {test['recall'][c]:.3f} | "
                                    f"{test['f1'][c]:.3f} | {test['support'][c]} |" for c in classes),
        "confusion_rows": "\n".join(f"| **{c}** | " + " | ".join(str(v) for v in cm[i]) + " |"
                                    for i, c in enumerate(classes)),
        "class_columns": " | ".join(classes), "column_rule": "---|" * len(classes),
    }


def _stages(metrics: Mapping[str, Any], total_min: float) -> str:
    """The exact command(s): one stage, or a first stage whose model the second one continues."""
    init = metrics.get("init_model") or {}
    if not init.get("command"):
        return f"- Exact command (from the repository root):\n\n```\n{metrics['command']}\n```\n"
    return (f"- Two stages, {total_min:.1f} min of training in all. Stage 1 ({init.get('epochs_run')} epochs, best "
            f"epoch {init.get('best_epoch')} kept, {init.get('train_seconds', 0) / 60:.1f} min, "
            f"{init.get('seconds_per_epoch') or 0:.0f} s/epoch), then its model copied to `{init['path']}`:\n\n"
            f"```\n{init['command']}\nmkdir -p {Path(init['path']).parent} && cp "
            f"{Path(metrics['parameters']['out']).parent}/* {Path(init['path']).parent}/\n```\n\n  Stage 2 continues "
            f"from it at a lower learning rate decaying to zero (the numbers above describe this stage):\n\n"
            f"```\n{metrics['command']}\n```\n")


def _kept(metrics: Mapping[str, Any]) -> str:
    """Which weights were kept: the best epoch, or the average of the last epochs."""
    kept = (f"The epoch with the best validation macro-F1 is kept (best: epoch {metrics['best_epoch']} of "
            f"{metrics['epochs_run']} run)")
    avg = metrics.get("weight_average")
    if avg:
        kept += (f"; the weights averaged over epochs {avg['epochs'][0]}-{avg['epochs'][-1]} (batch-norm statistics "
                 f"re-estimated) scored validation macro-F1 {avg['val_macro_f1']:.3f} and "
                 + ("were kept instead" if avg["chosen"] else "were not kept"))
    return kept


def _onnx_line(metrics: Mapping[str, Any]) -> str:
    """The run-time ONNX file and how it was made (``faces export``, or the training run itself)."""
    onnx = metrics.get("onnx_export")
    if not onnx and metrics.get("onnx"):  # a training run writes its own export beside model.keras
        onnx = {"file": metrics["onnx"], "command": metrics.get("command") or "the training run"}
    if not onnx:
        return ""
    diff = onnx.get("max_abs_diff_fer_test")
    diff = f"; it gives the Keras model's probabilities within {diff:.1e} on the FER2013 test split" if diff else ""
    return (f"Run time (photo -> music) loads `{onnx['file']}`, the ONNX export of `model.keras` (onnxruntime, no "
            f"TensorFlow), made by `{onnx['command']}`{diff}.\n")


def face_model_card(metrics: Mapping[str, Any], notes: str = "") -> str:
    """A Markdown model card of a face training run: data, licence, results, limits, biases, command."""
    test = metrics.get("test") or metrics["val"]
    arch, data, params, machine = metrics["architecture"], metrics["data"], metrics["parameters"], metrics["machine"]
    init = metrics.get("init_model") or {}
    total_min = (metrics["train_seconds"] + (init.get("train_seconds") or 0.0)) / 60
    convs = arch["convs_per_block"]
    convs = convs[0] if isinstance(convs, list) and len(set(convs)) == 1 else convs
    load = machine.get("load_average")
    plain = metrics.get("test_without_tta")
    values = {
        "class_list": ", ".join(metrics["classes"]), "n_classes": len(metrics["classes"]),
        "tta_flip": metrics["preprocessing"].get("tta_flip"), "onnx_line": _onnx_line(metrics),
        "n_train": sum(data["train"].values()), "train_counts": _counts(data["train"]),
        "n_val": sum(data["val"].values()),
        "n_test": sum(data["test"].values()) if data.get("test") else 0,
        "test_counts": _counts(data["test"]) if data.get("test") else "-", "n_scored": test["n"],
        **_result_tables(metrics, test, total_min),
        "tta_line": (f"Without the flip averaging: accuracy {plain['accuracy']:.3f}, macro-F1 {plain['macro_f1']:.3f}."
                     if plain else ""),
        "conv_blocks": arch["conv_blocks"], "convs": convs, "conv_dropout": arch["conv_dropout"],
        "conv_widths": arch["conv_widths"], "dense_layers": arch["dense_layers"],
        "dense_dropout": arch["dense_dropout"], "dense_widths": arch["dense_widths"],
        "parameters": f"{arch['parameters']:,}", "model_mb": f"{metrics['model_bytes'] / 1e6:.1f}",
        "loss": loss_description(params), "weight_decay": params.get("weight_decay"),
        "learning_rate": params.get("learning_rate"), "warmup_epochs": f"{params.get('warmup_epochs', 1):g}",
        "kept": _kept(metrics), "seconds_per_epoch": f"{metrics['seconds_per_epoch']:.0f}",
        "seconds_with_validation": "{:.0f}".format(float(np.mean(metrics["history"].get("seconds_with_validation")
                                                                  or [metrics["seconds_per_epoch"]]))),
        "epochs_run": metrics["epochs_run"], "train_minutes": f"{metrics['train_seconds'] / 60:.1f}",
        "total_minutes": f"{metrics['total_seconds'] / 60:.1f}", "cpus": machine["cpus"],
        "tensorflow": machine["tensorflow"],
        "load": f", load average {load:.1f} at the end" if load is not None else "",
        "seed": metrics["seed"], "stages": _stages(metrics, total_min), "notes": notes,
    }
    template = FACE_TEMPLATE.read_text()
    return Template(template.removesuffix("\n")).substitute(values)


def write_model_card(model_dir: str | os.PathLike, notes: str = "") -> Path:
    """Write ``MODEL_CARD.md`` from the ``metrics.json`` in ``model_dir`` (a face model folder), atomically."""
    model_dir = Path(model_dir)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    path = model_dir / "MODEL_CARD.md"
    with atomic_path(path) as tmp:
        tmp.write_text(face_model_card(metrics, notes))
        os.chmod(tmp, 0o644)
    return path
