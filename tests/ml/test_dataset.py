import hashlib
import shutil

import numpy as np
import pytest

from ml.classes import CLASS_NAMES
from ml.dataset import DatasetError, limit_per_class, load_arrays, scan_dataset

from .synthetic import write_dataset


def test_scan_records_class_hash_and_number(colour_dataset):
    dataset = scan_dataset(colour_dataset)
    assert dataset.counts() == {name: 12 for name in CLASS_NAMES}
    first = dataset.samples[0]
    assert first.class_name == "benign" and first.label == 0
    assert first.relpath == "Benign/IMG-Benign-001.png" and first.number == 1
    assert first.sha256 == hashlib.sha256((colour_dataset / first.relpath).read_bytes()).hexdigest()
    assert [s.number for s in dataset.samples if s.class_name == "pro_b"] == list(range(1, 13))


def test_kaggle_folder_names_and_ignored_files(tmp_path):
    root = write_dataset(
        tmp_path, per_class=2, folders=["Benign", "[Malignant] early Pre-B", "[Malignant] Pre-B", "[Malignant] Pro-B"]
    )
    (root / "Benign" / "notes.txt").write_text("not an image")
    (root / "Benign" / ".DS_Store").write_bytes(b"\0\0")
    (root / "README.md").write_text("files at the root are ignored")
    dataset = scan_dataset(root)
    assert dataset.counts() == {name: 2 for name in CLASS_NAMES}


def test_fingerprint_depends_on_bytes_and_labels_not_names(tmp_path, colour_dataset):
    fingerprint = scan_dataset(colour_dataset).fingerprint()
    copy = tmp_path / "copy"
    shutil.copytree(colour_dataset, copy)
    (copy / "Pro" / "IMG-Pro-001.png").rename(copy / "Pro" / "renamed-001.png")
    assert scan_dataset(copy).fingerprint() == fingerprint
    # The same image filed under another class is a different data set.
    (copy / "Pro" / "renamed-001.png").rename(copy / "Pre" / "moved-099.png")
    assert scan_dataset(copy).fingerprint() != fingerprint


def test_refuses_empty_class_folder(tmp_path):
    root = write_dataset(tmp_path, per_class=2, folders=["Benign", "Early", "Pre"])
    (root / "Pro").mkdir()
    with pytest.raises(DatasetError, match="Empty class folder.*'Pro'"):
        scan_dataset(root)


def test_refuses_unknown_class_folder(colour_dataset):
    (colour_dataset / "Leftovers").mkdir()
    with pytest.raises(DatasetError, match="Unknown class folder.*'Leftovers'"):
        scan_dataset(colour_dataset)


def test_refuses_missing_class_and_two_folders_for_one_class(tmp_path):
    root = write_dataset(tmp_path / "a", per_class=2, folders=["Benign", "Early", "Pre"])
    with pytest.raises(DatasetError, match="pro_b"):
        scan_dataset(root)
    assert scan_dataset(root, require_all_classes=False).counts()["pro_b"] == 0
    root = write_dataset(tmp_path / "b", per_class=2, folders=["Benign", "Early", "Pre", "Pro", "pro_b"])
    with pytest.raises(DatasetError, match="same class.*Pro"):
        scan_dataset(root)


def test_refuses_unreadable_files_naming_them(colour_dataset):
    (colour_dataset / "Early" / "IMG-Early-050.jpg").write_bytes(b"garbage")
    good = (colour_dataset / "Pre" / "IMG-Pre-001.png").read_bytes()
    (colour_dataset / "Pre" / "IMG-Pre-051.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError) as info:
        scan_dataset(colour_dataset)
    message = str(info.value)
    assert "2 unreadable" in message
    assert "Early/IMG-Early-050.jpg" in message and "Pre/IMG-Pre-051.png" in message


def test_refuses_identical_images_under_two_classes(colour_dataset):
    shutil.copy(colour_dataset / "Pre" / "IMG-Pre-003.png", colour_dataset / "Pro" / "IMG-Pro-077.png")
    with pytest.raises(DatasetError, match="different classes.*IMG-Pre-003.png"):
        scan_dataset(colour_dataset)


def test_duplicates_within_a_class_are_reported(colour_dataset):
    shutil.copy(colour_dataset / "Pro" / "IMG-Pro-003.png", colour_dataset / "Pro" / "IMG-Pro-004b.png")
    groups = scan_dataset(colour_dataset).duplicate_groups()
    assert [sorted(s.relpath for s in g) for g in groups] == [["Pro/IMG-Pro-003.png", "Pro/IMG-Pro-004b.png"]]


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        scan_dataset(tmp_path / "nope")


def test_load_arrays_threaded_matches_serial(colour_dataset):
    dataset = scan_dataset(colour_dataset)
    x, y = load_arrays(dataset.samples, 16, workers=2)
    assert x.shape == (48, 16, 16, 3) and x.dtype == np.uint8
    assert y.tolist() == [s.label for s in dataset.samples]
    x_serial, _ = load_arrays(dataset.samples, 16, workers=1)
    np.testing.assert_array_equal(x, x_serial)
    # The red class really is red after loading.
    assert x[y == 0][..., 0].mean() > x[y == 0][..., 2].mean() + 50


def test_limit_per_class_keeps_first_numbers(colour_dataset):
    kept = limit_per_class(scan_dataset(colour_dataset).samples, 3)
    assert len(kept) == 12
    assert {s.number for s in kept} == {1, 2, 3}
