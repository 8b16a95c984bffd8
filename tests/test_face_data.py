"""emolib.face_data: loading FER folders and zips, splits, class weights, the one image-suffix list."""
from __future__ import annotations

import numpy as np
import pytest

from emolib import EmolibError, face_data
from tests.facedata import make_face_tree

CLASSES = ("angry", "happy", "sad")


def test_stratified_split_is_seeded_and_keeps_every_class():
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    keep, held = face_data.stratified_split(y, 0.1, seed=3)
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(100))
    assert np.bincount(y[held]).tolist() == [5, 3, 2]
    assert np.array_equal(held, face_data.stratified_split(y, 0.1, seed=3)[1])
    assert not np.array_equal(held, face_data.stratified_split(y, 0.1, seed=4)[1])


def test_class_weights_balance_the_loss():
    y = np.array([0] * 60 + [1] * 20 + [2] * 20)
    w = face_data.class_weights(y, 3)
    totals = [w[k] * np.sum(y == k) for k in range(3)]
    assert np.allclose(totals, totals[0]) and w[1] > w[0]


def test_load_faces_from_folders_and_from_fer_style_zips(tmp_path):
    folders = make_face_tree(tmp_path / "tree", CLASSES, n_train=6, n_test=2)
    zips = make_face_tree(tmp_path / "zips", CLASSES, n_train=6, n_test=2, as_zips=True)
    a = face_data.load_faces(folders, "train", CLASSES)
    b = face_data.load_faces(zips, "train", CLASSES)
    assert a.x.shape == b.x.shape == (18, 48, 48) and a.x.dtype == np.uint8
    assert a.counts() == b.counts() == {"angry": 6, "happy": 6, "sad": 6}
    assert np.array_equal(a.x, b.x)  # same bytes, same preprocessing
    assert face_data.load_faces(zips, "test", CLASSES).counts() == {"angry": 2, "happy": 2, "sad": 2}
    limited = face_data.load_faces(folders, "train", CLASSES, limit_per_class=4, seed=1)
    assert limited.counts() == {"angry": 4, "happy": 4, "sad": 4}
    assert limited.names == face_data.load_faces(folders, "train", CLASSES, limit_per_class=4, seed=1).names
    with pytest.raises(EmolibError, match="no images for class"):
        face_data.load_faces(folders, "train", ("angry", "neutral"))
    with pytest.raises(EmolibError, match="unknown class"):
        face_data.load_faces(folders, "train", ("angry", "bored"))


def test_a_bad_training_image_is_named(tmp_path):
    root = make_face_tree(tmp_path / "tree", CLASSES, n_train=3, n_test=1)
    bad = root / "train" / "sad" / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(EmolibError, match=r"broken\.jpg"):
        face_data.load_faces(root, "train", CLASSES)
    assert len(face_data.load_faces(root, "train", CLASSES, strict=False)) == 9


def test_training_and_retraining_count_images_with_one_suffix_list(tmp_path):
    from emolib import faces, retrain

    assert face_data.IMAGE_SUFFIXES is faces.IMAGE_SUFFIXES
    happy = tmp_path / "train" / "happy"
    happy.mkdir(parents=True)
    for suffix in faces.IMAGE_SUFFIXES:  # every suffix training reads is counted by retraining too
        (happy / f"x{suffix.upper()}").write_bytes(b"")
    (happy / "notes.txt").write_bytes(b"")
    counted = retrain.count_data(tmp_path, retrain._suffixes()["image"])
    assert counted["per_folder"] == {"train/happy": len(faces.IMAGE_SUFFIXES)}
