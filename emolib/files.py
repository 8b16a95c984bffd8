"""Atomic file writes: an interrupted run never leaves a half-written output or model."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_bytes", "write_json", "jsonable"]


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success rename it over ``dest`` in one step.

    The temporary file keeps ``dest``'s suffix (Keras and soundfile choose formats by it) and
    lives in the same folder, so the final ``os.replace`` is atomic. On error it is removed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=suffix or "".join(dest.suffixes) or ".tmp",
                               dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    tmp_path.chmod(0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(dest: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_json(dest: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as pretty JSON to ``dest`` atomically."""
    return write_bytes(dest, (json.dumps(obj, indent=2, sort_keys=False, default=jsonable) + "\n").encode())


def jsonable(value: Any) -> Any:
    """Make numpy scalars/arrays and paths JSON-serialisable (``json.dumps(..., default=jsonable)``)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
