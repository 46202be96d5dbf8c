"""Test-time adaptation per site: a site's colour cast mapped back onto the reference statistics."""

import numpy as np

from ml import site_adaptation


def _smears(count=6, seed=0):
    rng = np.random.default_rng(seed)
    images = np.zeros((count, 64, 64, 3), dtype=np.uint8)  # black rows top and bottom: padding
    for image in images:
        field = rng.normal((215, 190, 210), 12, size=(48, 64, 3))
        for _ in range(6):
            y, x = rng.integers(4, 40), rng.integers(4, 56)
            field[y : y + 8, x : x + 8] = rng.normal((95, 50, 140), 8, size=3)
        image[8:56] = np.clip(field, 1, 255).astype(np.uint8)
    return images


def test_a_site_cast_is_mapped_back_onto_the_reference():
    reference_images = _smears(seed=1)
    reference = site_adaptation.lab_statistics(reference_images)
    site_images = _smears(seed=2)
    cast = np.clip(site_images * np.array([0.92, 1.0, 1.10]), 0, 255).astype(np.uint8)
    cast[:, :8] = 0
    cast[:, 56:] = 0
    site = site_adaptation.lab_statistics(cast)
    adapted = np.stack([site_adaptation.adapt(image, site, reference) for image in cast])
    after = site_adaptation.lab_statistics(adapted)
    assert np.allclose(after.mean, reference.mean, atol=0.6)
    assert np.allclose(after.std, reference.std, rtol=0.05)
    before_error = np.abs(np.asarray(site.mean) - np.asarray(reference.mean)).max()
    assert before_error > 3  # the cast was real
    # content moves back towards the uncast image; padding stays black
    assert (
        np.abs(adapted[:, 8:56].astype(int) - site_images[:, 8:56]).mean()
        < np.abs(cast[:, 8:56].astype(int) - site_images[:, 8:56]).mean()
    )
    assert (adapted[:, :8] == 0).all() and (adapted[:, 56:] == 0).all()


def test_statistics_need_content():
    import pytest

    with pytest.raises(ValueError):
        site_adaptation.lab_statistics([])


def test_chroma_mean_moves_the_cast_only():
    reference = site_adaptation.lab_statistics(_smears(seed=1))
    cast = np.clip(_smears(seed=2) * np.array([0.92, 1.0, 1.10]), 0, 255).astype(np.uint8)
    cast[:, :8] = 0
    cast[:, 56:] = 0
    site = site_adaptation.lab_statistics(cast)
    adapted = np.stack([site_adaptation.adapt(image, site, reference, "chroma-mean") for image in cast])
    after = site_adaptation.lab_statistics(adapted)
    assert np.allclose(after.mean[1:], reference.mean[1:], atol=0.6)
    assert abs(after.mean[0] - site.mean[0]) < 0.6  # lightness as the site sent it
