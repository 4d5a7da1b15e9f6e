"""Length-based reward shaping, as pure vectorised functions of token lengths.

DAPO's overlong reward shaping (Yu et al. 2025, arXiv 2503.14476, "soft overlong punishment"): no penalty
up to ``max_len - buffer`` tokens, then a penalty growing linearly to ``-factor`` at ``max_len``:

    penalty = -factor * clip((length - (max_len - buffer)) / buffer, 0, 1)

The clip keeps lengths past ``max_len`` (which an engine capped at ``max_len`` never produces) at ``-factor``.
The trainer adds the penalty to the rewards of the same responses.

>>> overlong_penalty([5, 6, 7, 8, 10, 12], max_len=10, buffer=4)
array([ 0.  ,  0.  , -0.25, -0.5 , -1.  , -1.  ])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def overlong_penalty(
    lengths_N: Sequence[int] | np.ndarray, max_len: int, buffer: int, factor: float = 1.0
) -> np.ndarray:
    """(N,) float64 penalties (<= 0) for (N,) response lengths in tokens."""
    if max_len < 1:
        raise ValueError(f"overlong_penalty max_len must be >= 1, got {max_len}")
    if not 0 < buffer <= max_len:
        raise ValueError(f"overlong_penalty buffer must be in (0, max_len={max_len}], got {buffer}")
    if not factor >= 0:
        raise ValueError(f"overlong_penalty factor must be >= 0, got {factor}")
    lengths = np.asarray(lengths_N, dtype=np.float64)
    exceed_frac_N = np.clip((lengths - (max_len - buffer)) / buffer, 0.0, 1.0)
    return 0.0 - factor * exceed_frac_N  # "0.0 -" turns -0.0 into 0.0 for the unpenalised
