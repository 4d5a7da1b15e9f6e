"""DAPO overlong penalty, checked by hand and against a per-element reference."""

from __future__ import annotations

import numpy as np
import pytest

from reward.shaping import overlong_penalty


def test_overlong_by_hand():
    # max_len 100, buffer 20: free up to 80 tokens, then -0.5 * (len - 80) / 20, capped at -0.5.
    lengths = [10, 80, 81, 90, 95, 100, 130]
    expected = [0.0, 0.0, -0.025, -0.25, -0.375, -0.5, -0.5]
    np.testing.assert_allclose(overlong_penalty(lengths, max_len=100, buffer=20, factor=0.5), expected, atol=1e-12)


def _reference(length, max_len, buffer, factor):
    expected_len = max_len - buffer
    if length <= expected_len:
        return 0.0
    return max(-(length - expected_len) / buffer * factor, -factor)


def test_matches_scalar_reference():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 600, size=1000)
    got = overlong_penalty(lengths, max_len=512, buffer=128, factor=1.0)
    want = [_reference(int(n), 512, 128, 1.0) for n in lengths]
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert got.shape == (1000,) and got.dtype == np.float64


def test_whole_length_buffer():
    # buffer == max_len: the penalty grows from the first token, -len / max_len
    np.testing.assert_allclose(overlong_penalty([0, 5, 10], max_len=10, buffer=10), [0.0, -0.5, -1.0])


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"max_len": 0, "buffer": 1}, "max_len"),
        ({"max_len": 10, "buffer": 0}, "buffer"),
        ({"max_len": 10, "buffer": 11}, "buffer"),
        ({"max_len": 10, "buffer": 5, "factor": -1.0}, "factor"),
    ],
)
def test_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        overlong_penalty([1], **kwargs)
