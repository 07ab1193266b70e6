"""Latency and throughput of a Runner: warm-up, then timed calls; percentiles of the runner's own timings."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from gear_trt.errors import ConfigError
from gear_trt.records import LatencyStats  # the record bench.json holds (the report reads it back)

if TYPE_CHECKING:
    from gear_trt.backends.base import Runner


def measure_latency(runner: "Runner", *, batch_size: int = 1, warmup: int = 20, iterations: int = 200, min_seconds: float = 0.0,
                    seed: int = 0) -> LatencyStats:
    """Time `iterations` calls (at least `min_seconds` worth) at `batch_size` after `warmup` untimed ones."""
    if batch_size < 1 or iterations < 1 or warmup < 0:
        raise ConfigError(f"need batch >= 1, iterations >= 1, warmup >= 0 (got {batch_size}, {iterations}, {warmup})")
    if runner.max_batch is not None and batch_size > runner.max_batch:
        raise ConfigError(f"batch {batch_size} exceeds the runner's maximum {runner.max_batch}", "lower the batch or rebuild with a larger --max-batch")
    x = np.random.default_rng(seed).standard_normal((batch_size, *runner.input_shape), dtype=np.float32)
    for _ in range(warmup):
        runner.infer(x)
    runner.reset_timing()
    start = time.perf_counter()
    count = 0
    while count < iterations or time.perf_counter() - start < min_seconds:
        runner.infer(x)
        count += 1
    t = np.asarray(runner.latencies_ms[-count:])
    p50, p90, p99 = np.percentile(t, [50, 90, 99])
    return LatencyStats(batch_size, count, warmup, float(p50), float(p90), float(p99), float(t.mean()), float(t.min()))
