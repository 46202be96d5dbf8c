"""The four output classes, their human labels and the data-set folder names that map to them.

The order of CLASS_NAMES is the order of the model's output units: never reorder it without
retraining every model (the metadata of each saved model records the list it was trained with).
"""

import re

CLASS_NAMES = ("benign", "early_pre_b", "pre_b", "pro_b")

HUMAN_LABELS = {
    "benign": "Benign (hematogone)",
    "early_pre_b": "Early Pre-B ALL",
    "pre_b": "Pre-B ALL",
    "pro_b": "Pro-B ALL",
}

# Folder names seen in the wild, normalised by _normalise_folder_name (lower case, punctuation and
# the "[Malignant]" prefix dropped). Covers the development copy (Benign/Early/Pre/Pro), the Kaggle
# long names ("[Malignant] early Pre-B", ...) and obvious spellings of the class names themselves.
_ALIASES = {
    "benign": "benign",
    "hematogone": "benign",
    "hematogones": "benign",
    "benign hematogone": "benign",
    "early": "early_pre_b",
    "early pre b": "early_pre_b",
    "early preb": "early_pre_b",
    "early pre b all": "early_pre_b",
    "pre": "pre_b",
    "pre b": "pre_b",
    "preb": "pre_b",
    "pre b all": "pre_b",
    "pro": "pro_b",
    "pro b": "pro_b",
    "prob": "pro_b",
    "pro b all": "pro_b",
}


def _normalise_folder_name(name):
    text = name.strip().lower()
    text = re.sub(r"\[?\bmalignant\b\]?", " ", text)
    text = re.sub(r"[^a-z0-9]+", " ", text)
    return " ".join(text.split())


def class_for_folder(folder_name):
    """Return the class name for a data-set folder name, or None if it is not a known alias."""
    return _ALIASES.get(_normalise_folder_name(folder_name))


def class_index(class_name):
    """Index of a class name in CLASS_NAMES (raises ValueError for an unknown name)."""
    return CLASS_NAMES.index(class_name)
