import os
from pathlib import Path

import pytest

from emolib.files import atomic_path, write_json
from emolib.paths import data_root


def test_data_root_prefers_env_var(tmp_path):
    assert data_root(env={"EMOLIB_DATA": str(tmp_path / "x")}, cwd=tmp_path) == tmp_path / "x"


def test_data_root_finds_shared_beside_the_working_dir(tmp_path, monkeypatch):
    import emolib.paths as paths

    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "elsewhere" / "repo")
    work = tmp_path / "proj" / "repo"
    work.mkdir(parents=True)
    (tmp_path / "proj" / "shared" / "data").mkdir(parents=True)
    assert data_root(env={}, cwd=work) == (tmp_path / "proj" / "shared" / "data").resolve()


def test_data_root_falls_back_to_local_data_without_error(tmp_path, monkeypatch):
    import emolib.paths as paths

    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "a" / "repo")
    assert data_root(env={}, cwd=tmp_path / "b") == tmp_path / "b" / "data"


def test_atomic_path_replaces_only_on_success(tmp_path):
    dest = tmp_path / "model.keras"
    dest.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        assert tmp.suffix == ".keras" and tmp.parent == tmp_path
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert dest.read_text() == "old"
    assert os.listdir(tmp_path) == ["model.keras"]
    with atomic_path(dest) as tmp:
        tmp.write_text("new")
    assert dest.read_text() == "new"


def test_write_json_handles_numpy(tmp_path):
    import json

    import numpy as np

    path = write_json(tmp_path / "m.json", {"acc": np.float32(0.5), "cm": np.eye(2, dtype=int), "p": Path("a")})
    assert json.loads(path.read_text()) == {"acc": 0.5, "cm": [[1, 0], [0, 1]], "p": "a"}


def test_atomic_outputs_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
