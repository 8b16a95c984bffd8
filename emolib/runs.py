"""What every training run shares: the tf.distribute strategy it runs under and the command that
started it (recorded in its metrics.json so the run can be repeated)."""
from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emolib.errors import EmolibError

__all__ = ["get_strategy", "command_line"]


def get_strategy(strategy: Any = "default"):
    """A ``tf.distribute`` strategy from a name or instance, so one CPU, a GPU or many share the code.

    Names: ``default`` (one CPU or GPU, whatever TensorFlow picks), ``mirrored`` (every local
    GPU), ``multiworker`` (MultiWorkerMirroredStrategy; workers come from ``TF_CONFIG``),
    ``onedevice`` or ``onedevice:/gpu:0`` for a named device. An instance is returned as is.
    """
    import tensorflow as tf

    if strategy is None or strategy == "default":
        return tf.distribute.get_strategy()
    if not isinstance(strategy, str):
        return strategy
    name, _, device = strategy.partition(":")
    name = name.lower().replace("_", "").replace("-", "")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name in ("multiworker", "multiworkermirrored"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "onedevice":
        return tf.distribute.OneDeviceStrategy(device or "/cpu:0")
    raise EmolibError(f"unknown strategy {strategy!r}: use default, mirrored, multiworker or onedevice:/gpu:0")


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that started this process, as a user would retype it (``python -m emolib ...``)."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return ""
    head = Path(argv[0])
    if head.name == "__main__.py" and head.parent.name == "emolib":
        prog = ["python", "-m", "emolib"]
    elif head.name == "emolib":
        prog = ["emolib"]
    elif argv[0] == "-c":
        prog = ["python", "-c", "..."]
    else:
        prog = ["python", argv[0]]
    return " ".join(shlex.quote(a) for a in [*prog, *argv[1:]])
