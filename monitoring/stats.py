"""Small statistics for proportions, in plain Python (no database, no Django)."""

from math import sqrt

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def proportion(successes, n):
    return successes / n if n else None


def wilson_interval(successes, n, z=Z95):
    """Wilson score interval of a proportion: (low, high), or (None, None) for n == 0.

    Unlike the normal approximation it stays within [0, 1] and is sensible for small n and for
    rates near 0 or 1, which is where agreement rates of a good model live.
    """
    if n <= 0:
        return None, None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within 0..{n}, not {successes}")
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
