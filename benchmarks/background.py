"""The isolation cells' background load: big REST JSON requests to a heavy model, from a
few closed-loop callers, for as long as the cell's load generator runs.

Each caller sends the same body, waits for the answer, and sends it again, so the load is
bounded (at most ``callers`` requests in flight) whatever the server's speed: a server
that answers big requests slowly gets fewer of them, not a growing queue. On exit the
callers stop sending and their last requests are waited for, so no big request of one
server is still running when the next server is measured.

    with BackgroundLoad(url, body, callers=2) as load:
        ...  # the light model's measurement
    load.result  # big requests answered, failed, their latencies
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

import requests

from benchmarks.stats import percentile


@dataclass(frozen=True)
class BackgroundResult:
    """What the background callers saw while they ran."""

    ok: int
    errors: int
    seconds: float
    p50_ms: float
    max_ms: float
    detail: dict[str, int] = field(default_factory=dict)
    """Failures by kind (``HTTP 500``, ``ConnectionError``, ...)."""

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


def summarise(latencies: list[float], failures: list[str], seconds: float) -> BackgroundResult:
    """Latencies in seconds (successes only) and one kind per failure, as a result."""
    detail: dict[str, int] = {}
    for kind in failures:
        detail[kind] = detail.get(kind, 0) + 1
    return BackgroundResult(
        ok=len(latencies),
        errors=len(failures),
        seconds=seconds,
        p50_ms=percentile(latencies, 50) * 1e3,
        max_ms=max(latencies, default=0.0) * 1e3,
        detail=detail,
    )


class BackgroundLoad:
    """``callers`` threads posting ``body`` to ``url`` until the ``with`` block ends."""

    def __init__(self, url: str, body: bytes, callers: int, timeout: float = 120.0) -> None:
        self._url, self._body, self._timeout = url, body, timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._latencies: list[float] = []
        self._failures: list[str] = []
        self._threads = [threading.Thread(target=self._caller, daemon=True) for _ in range(callers)]
        self._started = 0.0
        self.result: BackgroundResult | None = None

    def _caller(self) -> None:
        headers = {"Content-Type": "application/json"}
        with requests.Session() as session:
            while not self._stop.is_set():
                sent = time.perf_counter()
                try:
                    response = session.post(
                        self._url, data=self._body, headers=headers, timeout=self._timeout
                    )
                    failure = "" if response.status_code == 200 else f"HTTP {response.status_code}"
                except requests.RequestException as exc:
                    failure = type(exc).__name__
                with self._lock:
                    if failure:
                        self._failures.append(failure)
                    else:
                        self._latencies.append(time.perf_counter() - sent)
                if failure and not self._stop.is_set():
                    # A refusing server must not be hammered in a tight loop.
                    self._stop.wait(0.1)

    def __enter__(self) -> BackgroundLoad:
        self._started = time.perf_counter()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self._timeout + 10)
        with self._lock:
            self.result = summarise(
                list(self._latencies), list(self._failures), time.perf_counter() - self._started
            )
