"""Timing contenders round-robin in one process, so that machine drift hits them all alike."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

SETTLE_REWARM_S = 0.02


class Runner:
    """A contender as the timing functions see it: :meth:`prepare` turns an input into what :meth:`timed_once`
    takes (copies and conversions happen there, before the clock), :meth:`timed_once` runs once and returns
    seconds."""

    name = "runner"

    def __call__(self, x: np.ndarray) -> Any:
        raise NotImplementedError

    def prepare(self, x: np.ndarray) -> Any:
        return np.ascontiguousarray(x, dtype=np.float32)

    def timed_once(self, x: Any) -> float:
        raise NotImplementedError

    def time(self, x: np.ndarray, repeats: int = 20, warmup: int = 3) -> list[float]:
        """Seconds per run, ``repeats`` samples after ``warmup`` untimed runs."""
        x = self.prepare(x)
        for _ in range(warmup):
            self.timed_once(x)
        return [self.timed_once(x) for _ in range(repeats)]


def median_ms(samples: Iterable[float]) -> float:
    """Median of samples given in seconds, in milliseconds."""
    return float(np.median(np.asarray(list(samples), dtype=np.float64))) * 1e3


def time_interleaved(runners: Mapping[str, Runner], x: np.ndarray, repeats: int = 20,
                     warmup: int = 3) -> dict[str, list[float]]:
    """Time several runners round-robin (one run of each per round) so that machine drift hits all alike."""
    xs = {name: r.prepare(x) for name, r in runners.items()}
    for _ in range(warmup):
        for name, r in runners.items():
            r.timed_once(xs[name])
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, r in runners.items():
            samples[name].append(r.timed_once(xs[name]))
    return samples


def time_interleaved_bursts(runners: Mapping[str, Runner], x: np.ndarray, repeats: int = 20, warmup: int = 3,
                            min_burst_s: float = 2e-3, max_burst: int = 1000,
                            settle_s: float = 0.0) -> dict[str, list[float]]:
    """:func:`time_interleaved` with warm caches: each round runs each runner in a burst of back-to-back calls
    (about ``min_burst_s`` long, at least 2 calls) and records the median of the burst's calls after its first.

    Single interleaved calls start cold (the other contenders evicted their weights, and on a VM an idle gap
    slows the next call): negligible for a several-ms call, up to 2x for a 0.05 ms one. Bursts keep the
    round-robin (drift hits all alike) but measure the steady-state time per call.

    ``settle_s``: idle time before each burst. Multi-threaded runtimes keep their workers spinning for a while
    after a call (TVM ≈ 0.1 s, ruy/pthreadpool some ms); without a pause those workers take cores from the next
    contender's threads (seen: a 2-thread QuickNet at 1.6 ms interleaved vs 0.84 ms alone). After the pause the
    runner is called untimed for ``SETTLE_REWARM_S`` (its own workers and the idle vCPU wake up again: without it
    a 0.06 ms layer took 0.08 ms on 2 threads)."""
    xs = {name: r.prepare(x) for name, r in runners.items()}
    first: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(max(1, warmup)):
        for name, r in runners.items():
            first[name].append(r.timed_once(xs[name]))
    burst = {
        name: int(min(max_burst, max(2, np.ceil(min_burst_s / max(float(np.median(t)), 1e-9)) + 1)))
        for name, t in first.items()
    }
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, r in runners.items():
            if settle_s > 0:
                time.sleep(settle_s)
                # then wake this runtime's own workers (and the idle vCPU) up again before timing
                end = time.perf_counter() + SETTLE_REWARM_S
                while time.perf_counter() < end:
                    r.timed_once(xs[name])
            times = [r.timed_once(xs[name]) for _ in range(burst[name])]
            samples[name].append(float(np.median(times[1:])))
    return samples


def median_times(runners: Mapping[str, Runner], x: np.ndarray, repeats: int, warmup: int, burst_ms: float,
                 settle_ms: float = 0.0) -> dict[str, float]:
    """Median ms per runner, round-robin: single calls (``burst_ms`` = 0) or warm bursts of about ``burst_ms``
    (each after ``settle_ms`` idle, so that the previous contender's spinning workers have gone to sleep)."""
    if burst_ms > 0:
        samples = time_interleaved_bursts(runners, x, repeats, warmup, min_burst_s=burst_ms * 1e-3,
                                          settle_s=settle_ms * 1e-3)
    else:
        samples = time_interleaved(runners, x, repeats, warmup)
    return {k: median_ms(v) for k, v in samples.items()}
