"""How fast this machine is right now, for reading benchmark numbers taken on shared, noisy CPUs.

The 2-core machines these benchmarks run on change speed from minute to minute (the same 4096x256x256 float32
matrix product measured 3.2 to 5.8 ms within an hour, nothing else running), so every benchmark reports this gauge
at its start and end next to its timings: compare runs whose gauges agree, or scale by them.
"""

from __future__ import annotations

import statistics
import time


def gemm_gflops(repeats: int = 100) -> float:
    """Median float32 GFLOP/s of a (4096 x 256) @ (256 x 256) torch product on the current torch thread count."""
    import torch

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(4096, 256, generator=generator)
    b = torch.randn(256, 256, generator=generator)
    for _ in range(10):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return round(2 * 4096 * 256 * 256 / statistics.median(times) / 1e9, 1)
