"""Logits -> probabilities and top-k, the same way as engines/src/postprocess.cpp.

Top-k ranks the logits (not the probabilities, which can round to ties): higher first, equal
values by lower class index, NaN last. Both runtimes therefore give the same indices for the
same logits; probabilities agree to float32 rounding (the exp and the sum order differ).
"""

from __future__ import annotations

import numpy as np

from gear_trt.errors import ConfigError


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in float32: exp(l - max) / sum."""
    x = np.asarray(logits, dtype=np.float32)
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)


def topk_indices(logits: np.ndarray, k: int) -> np.ndarray:
    """[N, C] logits -> [N, k] int64 class indices, best first; ties keep the lower index first."""
    x = np.asarray(logits, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"topk_indices expects [N, C] logits, got shape {x.shape}")
    if not 1 <= int(k) <= x.shape[1]:
        raise ConfigError(f"top-k must be between 1 and the number of classes ({x.shape[1]}), got {k}", "pass a smaller k")
    # A stable sort of -x: descending, equal values in index order, NaN (still NaN) at the end.
    order = np.argsort(-x, axis=1, kind="stable")
    return order[:, : int(k)].astype(np.int64)
