"""The lock (constraints.txt), pyproject's lower bounds and environment.yml must agree."""
import importlib.metadata as md
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from emolib.paths import REPO_ROOT


def _env_module():
    spec = importlib.util.spec_from_file_location("environment_yml", REPO_ROOT / ".ci" / "environment_yml.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_environment_yml_is_generated_from_the_lock():
    committed = (REPO_ROOT / "environment.yml").read_text()
    assert committed == _env_module().render(), (
        "environment.yml drifted: run `python .ci/environment_yml.py > environment.yml`")


def test_environment_yml_is_valid_conda_syntax():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    assert env["name"] == "emolib"
    assert env["channels"] == ["conda-forge"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    for spec in conda:
        assert re.fullmatch(r"[a-z0-9_.\-]+(=[0-9.*]+)?", spec), spec
    for spec in pip:
        req = Requirement(spec)
        assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", spec
    assert not any(s.startswith("basic-pitch") for s in pip), "basic-pitch must be installed with --no-deps"


def test_lock_satisfies_pyproject_lower_bounds():
    meta = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = _env_module().pins()
    reqs = meta["dependencies"] + meta["optional-dependencies"]["cpu"] + meta["optional-dependencies"]["dev"]
    for spec in reqs:
        req = Requirement(spec)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), f"lock {name}=={pins[name]} breaks {spec}"


def _lock_install() -> str | None:
    """Why this environment is the lock install (``make install``'s stamp, or EMOLIB_LOCK_INSTALL=1), else None."""
    if os.environ.get("EMOLIB_LOCK_INSTALL") == "1":
        return "EMOLIB_LOCK_INSTALL=1"
    stamp = Path(sys.prefix) / ".emolib-installed"
    return f"{stamp} exists" if stamp.is_file() else None


def test_installed_versions_match_the_lock():
    if _lock_install() is None:
        pytest.skip(f"not the lock install (no {Path(sys.prefix) / '.emolib-installed'} stamp from `make install`, "
                    "EMOLIB_LOCK_INSTALL unset): installed versions are only compared with constraints.txt there")
    pins = _env_module().pins()
    for name in ["tensorflow-cpu", "keras", "numpy", "basic-pitch", "opencv-python-headless", "pretty-midi",
                 "onnxruntime"]:
        assert md.version(name) == pins[name], (
            f"{name}: installed {md.version(name)}, locked {pins[name]} (run make install)")


def test_opencv_stays_below_5_and_has_haar_cascades():
    import cv2

    assert Version(cv2.__version__).major < 5
    assert hasattr(cv2, "CascadeClassifier")
    assert (REPO_ROOT / "constraints.txt").read_text().count("basic-pitch==") == 1


def test_the_wheel_carries_every_file_run_time_reads(tmp_path):
    """A non-editable install (Colab's, pip's) must find the models, the app page and the card template."""
    import zipfile

    try:  # building offline uses the environment's setuptools; fresh Python 3.12+ venvs have none
        ok = Version(md.version("setuptools")) >= Version("77")
    except md.PackageNotFoundError:
        ok = False
    if not ok:
        pytest.skip("no setuptools >= 77 here to build a wheel offline (make install provides it)")

    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path), str(REPO_ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("emolib-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(["git", "ls-files", "emolib"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    data = [f for f in tracked if not f.endswith(".py") and "/versions/" not in f]
    assert data and "emolib/models/face/model.onnx" in data and "emolib/app/app.ipynb" in data
    missing = sorted(set(data) - names)
    assert not missing, f"files in git but not in the wheel: {missing}"
    assert "drive_mount.py" in names  # notebooks opened in Colab from GitHub import it from the install
    assert not any(n.startswith("emolib/emotion.py") or n == "emolib/retrain.py" for n in names)  # no stale copies
