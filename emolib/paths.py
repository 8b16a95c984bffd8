"""Where data and models live. Every default location resolves here, nowhere else."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["REPO_ROOT", "MODELS_DIR", "ASSETS_DIR", "EXPECTED_FOLDERS", "in_colab", "mount_drive", "data_root",
           "shared_data"]

#: The repository checkout (meaningful for a source/editable install).
REPO_ROOT = Path(__file__).resolve().parents[1]
#: Models shipped inside the package.
MODELS_DIR = Path(__file__).resolve().parent / "models"
#: Files shipped inside the package (the sample photo).
ASSETS_DIR = Path(__file__).resolve().parent / "assets"


#: Sub-folders a data root is expected to hold (created on Drive for Colab users).
EXPECTED_FOLDERS = ("fer2013",
                    *(f"music/{kind}/{e}" for kind in ("midi", "mp3") for e in ("happy", "sad", "angry", "relax")))


def in_colab() -> bool:
    """True inside Google Colab (its ``google.colab`` module is importable)."""
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


def mount_drive(folder: str = "emolib", mount_point: str = "/content/drive") -> Path:
    """Mount Google Drive (Colab only) and return ``MyDrive/<folder>``, creating the expected folders."""
    from google.colab import drive

    drive.mount(mount_point)
    root = Path(mount_point) / "MyDrive" / folder
    for sub in EXPECTED_FOLDERS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def data_root(env: Mapping[str, str] | None = None, cwd: Path | None = None, drive_folder: str = "emolib") -> Path:
    """The data folder to read from when the caller names none.

    Order: ``$EMOLIB_DATA``; in Colab, Google Drive's ``MyDrive/<drive_folder>`` (mounted on
    demand); else ``../shared/data`` beside the working directory or beside the repository (CI
    and development machines); else ``./data``. Outside Colab it never raises: a missing folder
    is reported by whatever reads it, with the path it tried.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else Path(cwd)
    if env.get("EMOLIB_DATA"):
        return Path(env["EMOLIB_DATA"]).expanduser()
    if in_colab():
        return mount_drive(drive_folder)
    for base in (cwd, REPO_ROOT):
        shared = (base / ".." / "shared" / "data").resolve()
        if shared.is_dir():
            return shared
    return cwd / "data"


def shared_data() -> Path | None:
    """The real dataset folder when present (``$EMOLIB_DATA`` or ``../shared/data``), else None."""
    root = data_root()
    return root if (root / "fer2013").is_dir() or (root / "music").is_dir() else None
