"""Where tests find the real image set, and what they do without it."""

import os

import pytest


def require_real_data(root, setting):
    """``root`` if it holds the real images; otherwise skip, except in CI (CI=true), which must have them."""
    if not (root.is_dir() and any(root.iterdir())):
        message = f"Real data set not found at {root} ({setting})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; CI must have it.")
        pytest.skip(message)
    return root
