"""Triton's statistics extension: counts and durations per model version.

Shapes follow Triton's ``ModelStatistics`` (``docs/protocol/extension_statistics.md``),
so the same dictionary serves REST as JSON and gRPC through ``json_format.ParseDict``.
"""

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..timings import Phases

PHASES = ("compute_input", "compute_infer", "compute_output")


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class VersionStatistics:
    inference_count: int = 0
    execution_count: int = 0
    last_inference: int = 0
    durations: dict[str, Duration] = field(
        default_factory=lambda: {name: Duration() for name in ("success", "fail", "queue", *PHASES)}
    )
    batches: dict[int, dict[str, Duration]] = field(default_factory=dict)


class Statistics:
    def __init__(self) -> None:
        self._versions: dict[tuple[str, str], VersionStatistics] = {}

    def record(
        self, model: str, version: str, batch_size: int, ok: bool, total_ns: int, phases: Phases
    ) -> None:
        stats = self._versions.get((model, version))
        if stats is None:  # not setdefault: a VersionStatistics per request costs microseconds
            stats = self._versions[(model, version)] = VersionStatistics()
        stats.last_inference = int(time.time() * 1000)
        if not ok:
            stats.durations["fail"].add(total_ns)
            return
        stats.inference_count += batch_size
        stats.execution_count += 1
        stats.durations["success"].add(total_ns)
        stats.durations["queue"].add(phases.queue_ns)
        batch = stats.batches.setdefault(batch_size, {name: Duration() for name in PHASES})
        for name, ns in zip(
            PHASES, (phases.input_ns, phases.infer_ns, phases.output_ns), strict=True
        ):
            stats.durations[name].add(ns)
            batch[name].add(ns)

    def forget(self, model: str, version: str) -> None:
        self._versions.pop((model, version), None)

    # A LifecycleListener (runtimes.repository.lifecycle): a retired version's counts go.
    def version_loaded(self, model: str, version: str, seconds: float) -> None:
        pass

    def load_failed(self, model: str, version: str, seconds: float, reason: str) -> None:
        pass

    def version_retired(self, model: str, version: str) -> None:
        self.forget(model, version)

    def snapshot(
        self, versions: Iterable[tuple[str, str]], cache: dict[tuple[str, str], dict[str, Any]]
    ) -> dict[str, Any]:
        """Triton's ModelStatisticsResponse for the given (model, version) pairs."""
        model_stats = []
        for model, version in versions:
            stats = self._versions.get((model, version), VersionStatistics())
            inference = {name: d.as_dict() for name, d in stats.durations.items()}
            inference.update(cache.get((model, version), {}))
            model_stats.append(
                {
                    "name": model,
                    "version": version,
                    "last_inference": stats.last_inference,
                    "inference_count": stats.inference_count,
                    "execution_count": stats.execution_count,
                    "inference_stats": inference,
                    "batch_stats": [
                        {"batch_size": size, **{n: d.as_dict() for n, d in phases.items()}}
                        for size, phases in sorted(stats.batches.items())
                    ],
                    "memory_usage": [],
                }
            )
        return {"model_stats": model_stats}
