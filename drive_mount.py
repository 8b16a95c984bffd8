"""Find the data folder: Google Drive in Colab, a local folder elsewhere.

In a notebook:    from drive_mount import data_root; DATA = data_root()
From a shell:     python drive_mount.py            (prints the data root)

In Colab this mounts Drive and returns ``MyDrive/emolib`` (``folder`` is a parameter), creating
the expected sub-folders (fer2013/, music/midi/<emotion>/, music/mp3/<emotion>/). Elsewhere it
returns ``$EMOLIB_DATA``, else ``../shared/data`` if present, else ``./data``, without error.
The logic lives in ``emolib.paths`` so the package and this script agree.
"""
from __future__ import annotations

from pathlib import Path

from emolib.paths import EXPECTED_FOLDERS, in_colab, mount_drive
from emolib.paths import data_root as _data_root

__all__ = ["data_root", "mount_drive", "in_colab", "EXPECTED_FOLDERS"]


def data_root(folder: str = "emolib") -> Path:
    """The data root: Drive's ``MyDrive/<folder>`` in Colab, else the local default."""
    return _data_root(drive_folder=folder)


if __name__ == "__main__":
    print(data_root())
