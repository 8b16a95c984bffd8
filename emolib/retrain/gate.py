"""The promotion gate: compare a candidate's validation metric with the current model's; check it loads."""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Decision", "gate", "read_metrics", "metric_value", "verify_loads", "scalars"]


def read_metrics(path: str | os.PathLike) -> dict[str, Any] | None:
    """A metrics.json as a dict, or None when missing or unreadable."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def metric_value(metrics: Mapping[str, Any] | None, key: str) -> Any:
    """``metrics[key]`` where key may be dotted (``val.macro_f1``); None when absent.

    ``val.`` and ``validation.`` find each other: face metrics.json files (and retrain.yaml gates)
    written before the two models' keys were made one spelling still compare.
    """
    value = _lookup(metrics, key)
    if value is _MISSING:
        head, _, rest = key.partition(".")
        other = {"val": "validation", "validation": "val"}.get(head)
        value = _lookup(metrics, f"{other}.{rest}") if other else _MISSING
    return None if value is _MISSING else value


_MISSING = object()


def _lookup(metrics: Mapping[str, Any] | None, key: str) -> Any:
    """The value at a dotted ``key``, or ``_MISSING``."""
    value: Any = metrics
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _identity(value: Any) -> Any:
    """What a `comparable` value means: an absolute path by its last two parts (``music/midi``), so
    the same dataset compares equal on every machine while a different folder does not."""
    if isinstance(value, str) and os.path.isabs(value):
        return tuple(Path(value).parts[-2:])
    return value


@dataclass
class Decision:
    """The gate's verdict for one candidate."""

    promote: bool
    reason: str
    candidate: float | None = None
    current: float | None = None


def gate(candidate: Mapping[str, Any] | None, current: Mapping[str, Any] | None, rule: Mapping[str, Any],
         current_exists: bool = True) -> Decision:
    """Promote only a candidate at least as good as the current model on the same validation metric.

    ``rule``: metric (dotted key in metrics.json), mode (max: higher is better; min: lower is
    better), margin (the candidate must beat the current value by at least this), comparable
    (keys whose values must be equal in both metrics, or the two numbers measure different things).
    With no current model the candidate is promoted; with a current model whose metrics lack the
    metric nothing is promoted (it cannot be compared, and the good model must never be lost).
    """
    key, mode, margin = rule["metric"], rule["mode"], float(rule.get("margin", 0.0))
    cand = _number(metric_value(candidate, key))
    if cand is None:
        return Decision(False, f"candidate metrics.json has no finite {key!r}")
    if not current_exists:
        return Decision(True, f"no current model; candidate {key} = {cand:.4g}", cand, None)
    cur = _number(metric_value(current, key))
    if cur is None:
        return Decision(False, f"the current model's metrics.json has no finite {key!r}, so the candidate "
                               f"({cand:.4g}) cannot be compared; kept the current model", cand, None)
    for k in rule.get("comparable") or []:
        a, b = metric_value(current, k), metric_value(candidate, k)
        if a is not None and b is not None and _identity(a) != _identity(b):
            return Decision(False, f"not comparable: {k} differs (current {a!r}, candidate {b!r})", cand, cur)
    if mode == "max":
        ok, sign, rel = cand >= cur + margin, "+", ">=" if cand >= cur + margin else "<"
    else:
        ok, sign, rel = cand <= cur - margin, "-", "<=" if cand <= cur - margin else ">"
    better = "higher" if mode == "max" else "lower"
    return Decision(ok, f"{key} {cand:.4g} {rel} current {cur:.4g} {sign} margin {margin:g} ({better} is better)",
                    cand, cur)


def verify_loads(model_path: Path, imports: list[str], loader: str | None = None) -> str | None:
    """None when the candidate loads, else why not.

    With ``loader`` ("module:function"), that function is called with the model path (the way the
    package itself loads this kind of model); else, after importing ``imports`` (which register
    custom Keras objects), a ``.keras`` file is loaded with ``keras.saving.load_model(safe_mode=True)``.
    """
    import importlib

    try:
        for mod in imports:
            importlib.import_module(mod)
        if loader:
            module, _, func = loader.partition(":")
            getattr(importlib.import_module(module), func)(model_path)
        elif model_path.suffix == ".keras":
            import keras

            keras.saving.load_model(model_path, safe_mode=True, compile=False)
    except Exception as err:  # any failure means: do not promote
        first = (str(err).strip().splitlines() or [""])[0][:200]
        return f"candidate does not load: {type(err).__name__}: {first}"
    return None


def scalars(metrics: Mapping[str, Any], prefix: str = "", depth: int = 2) -> dict[str, float]:
    """The numbers of a metrics dict, nested ones as dotted keys (two levels), for the history."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if _number(v) is not None:
            out[prefix + k] = float(v)
        elif isinstance(v, Mapping) and depth > 1 and k not in ("history", "parameters"):
            out.update(scalars(v, f"{prefix}{k}.", depth - 1))
    return out
