"""Where data and models live. Every default location resolves here, nowhere else."""
from __future__ import annotations

import os
from pathlib import Path

#: The repository checkout (meaningful for a source/editable install).
REPO_ROOT = Path(__file__).resolve().parents[1]
#: Models shipped inside the package.
MODELS_DIR = Path(__file__).resolve().parent / "models"
#: Files shipped inside the package (the sample photo).
ASSETS_DIR = Path(__file__).resolve().parent / "assets"


def data_root(env: dict[str, str] | None = None, cwd: Path | None = None) -> Path:
    """The data folder to read from when the caller names none.

    Order: ``$EMOLIB_DATA``; else ``../shared/data`` beside the working directory or beside
    the repository (CI and development machines); else ``./data``. Never raises: a missing
    folder is reported by whatever reads it, with the path it tried.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else Path(cwd)
    if env.get("EMOLIB_DATA"):
        return Path(env["EMOLIB_DATA"]).expanduser()
    for base in (cwd, REPO_ROOT):
        shared = (base / ".." / "shared" / "data").resolve()
        if shared.is_dir():
            return shared
    return cwd / "data"


def shared_data() -> Path | None:
    """The real dataset folder when present (``$EMOLIB_DATA`` or ``../shared/data``), else None."""
    root = data_root()
    return root if (root / "fer2013").is_dir() or (root / "music").is_dir() else None
