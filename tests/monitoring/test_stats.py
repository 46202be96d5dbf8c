"""The Wilson score interval against published values (Newcombe 1998, Stat Med 17:857, Table I)."""

import pytest

from monitoring.stats import proportion, wilson_interval


@pytest.mark.parametrize(
    "successes, n, low, high",
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (29, 29, 0.8830, 1.0),
    ],
)
def test_wilson_interval_matches_published_values(successes, n, low, high):
    got_low, got_high = wilson_interval(successes, n)
    assert got_low == pytest.approx(low, abs=5e-5)
    assert got_high == pytest.approx(high, abs=5e-5)


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (None, None)
    assert proportion(0, 0) is None
    low, high = wilson_interval(47, 50)
    assert low < 47 / 50 < high
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
