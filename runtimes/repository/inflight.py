"""Counts requests in flight per model instance, so a retired version can drain."""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from mlserver.model import MLModel


class InFlight:
    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self._idle: dict[int, asyncio.Event] = {}

    def enter(self, model: MLModel) -> None:
        key = id(model)
        count = self._counts.get(key, 0)
        if count == 0:
            self._idle[key] = asyncio.Event()
        self._counts[key] = count + 1

    def leave(self, model: MLModel) -> None:
        key = id(model)
        self._counts[key] -= 1
        if self._counts[key] == 0:
            del self._counts[key]
            self._idle.pop(key).set()

    @contextmanager
    def track(self, model: MLModel) -> Iterator[None]:
        self.enter(model)
        try:
            yield
        finally:
            self.leave(model)

    def count(self, model: MLModel) -> int:
        return self._counts.get(id(model), 0)

    async def drained(self, model: MLModel, timeout: float) -> bool:
        idle = self._idle.get(id(model))
        if idle is None:
            return True
        try:
            await asyncio.wait_for(idle.wait(), timeout)
        except TimeoutError:
            return False
        return True
