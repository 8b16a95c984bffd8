"""A pool job for emolib.batch's tests: kills its worker process on chosen inputs (importable by spawned workers)."""
from __future__ import annotations

import os
from pathlib import Path


def work(job: tuple[str, str]) -> dict:
    """``*crash_once*`` inputs kill the worker the first time (marker file), ``*crash_always*`` every time."""
    src, dest = job
    marker = Path(src + ".crashed")
    if "crash_always" in src or ("crash_once" in src and not marker.exists()):
        marker.touch()
        os._exit(1)
    return {"input": src, "output": dest, "status": "converted", "seconds": 1.0, "notes": 1, "error": None}
