import sys
import types
from pathlib import Path

import pytest

import drive_mount
from emolib import paths


@pytest.fixture
def fake_colab(tmp_path, monkeypatch):
    """A stand-in google.colab whose drive.mount creates MyDrive under the mount point."""
    calls = []

    def mount(mount_point, **kwargs):
        calls.append(mount_point)
        (Path(mount_point) / "MyDrive").mkdir(parents=True, exist_ok=True)

    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    drive = types.ModuleType("google.colab.drive")
    drive.mount = mount
    colab.drive = drive
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.drive", drive)
    monkeypatch.delenv("EMOLIB_DATA", raising=False)
    return calls


def test_outside_colab_returns_local_root_without_error(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOLIB_DATA", str(tmp_path / "mine"))
    assert not paths.in_colab()
    assert drive_mount.data_root() == tmp_path / "mine"
    monkeypatch.delenv("EMOLIB_DATA")
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "nowhere" / "repo")
    monkeypatch.chdir(tmp_path)
    assert drive_mount.data_root() == tmp_path / "data"
    assert not (tmp_path / "data").exists()  # nothing created outside Colab



def test_mount_drive_with_stand_in_module(tmp_path, fake_colab):
    root = paths.mount_drive("course", mount_point=str(tmp_path / "drive"))
    assert fake_colab == [str(tmp_path / "drive")]
    assert root == tmp_path / "drive" / "MyDrive" / "course"
    for sub in paths.EXPECTED_FOLDERS:
        assert (root / sub).is_dir(), sub
    assert (root / "music" / "midi" / "relax").is_dir()


def test_data_root_in_colab_goes_to_drive(tmp_path, monkeypatch, fake_colab):
    monkeypatch.setattr(paths, "mount_drive", lambda folder: tmp_path / "MyDrive" / folder)
    assert paths.in_colab()
    assert drive_mount.data_root("emolib") == tmp_path / "MyDrive" / "emolib"
    monkeypatch.setenv("EMOLIB_DATA", str(tmp_path / "override"))
    assert drive_mount.data_root() == tmp_path / "override"  # an explicit setting wins even in Colab


def test_script_prints_the_root(tmp_path):
    import subprocess

    res = subprocess.run([sys.executable, str(paths.REPO_ROOT / "drive_mount.py")], capture_output=True, text=True,
                         env={"EMOLIB_DATA": str(tmp_path), "PATH": "/usr/bin:/bin",
                              "PYTHONPATH": str(paths.REPO_ROOT)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(tmp_path)
