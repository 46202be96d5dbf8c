import pytest

from ml.classes import CLASS_NAMES, HUMAN_LABELS, class_for_folder, class_index


def test_class_order_and_labels():
    assert CLASS_NAMES == ("benign", "early_pre_b", "pre_b", "pro_b")
    assert [HUMAN_LABELS[c] for c in CLASS_NAMES] == [
        "Benign (hematogone)",
        "Early Pre-B ALL",
        "Pre-B ALL",
        "Pro-B ALL",
    ]
    assert class_index("pre_b") == 2


@pytest.mark.parametrize(
    "folder, expected",
    [
        ("Benign", "benign"),
        ("benign", "benign"),
        ("BENIGN", "benign"),
        ("Hematogone", "benign"),
        ("Early", "early_pre_b"),
        ("[Malignant] early Pre-B", "early_pre_b"),
        ("early_pre_b", "early_pre_b"),
        ("Pre", "pre_b"),
        ("[Malignant] Pre-B", "pre_b"),
        ("pre-b", "pre_b"),
        ("Malignant Pre B", "pre_b"),
        ("Pro", "pro_b"),
        ("[Malignant] Pro-B", "pro_b"),
        ("pro_b", "pro_b"),
        (" pro ", "pro_b"),
    ],
)
def test_folder_aliases(folder, expected):
    assert class_for_folder(folder) == expected


@pytest.mark.parametrize("folder", ["original", "segmented", "Malignant", "Late", "", "Pre-T"])
def test_unknown_folders(folder):
    assert class_for_folder(folder) is None


def test_classes_module_does_not_import_keras():
    # Django code reads class names; that must not pay for a backend import.
    import subprocess
    import sys

    code = "import sys, ml.classes; print('keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
