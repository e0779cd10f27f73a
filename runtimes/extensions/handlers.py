"""Model configuration and statistics for one server, shared by REST and gRPC."""

from typing import Any

from ..cache import ResponseCache
from ..dataplane import V2DataPlane
from ..execution import Executions
from .config import model_config
from .statistics import Statistics


class ExtensionHandlers:
    def __init__(
        self,
        data_plane: V2DataPlane,
        statistics: Statistics,
        response_cache: ResponseCache | None = None,
        executions: Executions | None = None,
    ):
        self.data_plane = data_plane
        self.statistics = statistics
        self.response_cache = response_cache
        self.executions = executions

    async def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        model = await self.data_plane.resolve(name, version)
        return model_config(model, self.executions)

    async def _served(self, name: str | None, version: str | None) -> list[tuple[str, str]]:
        if name:
            model = await self.data_plane.resolve(name, version)
            if version:
                return [(model.name, model.version or "")]
            return [(name, v) for v in await self.data_plane.available_versions(name)]
        served = []
        for status in self.data_plane.states.all():
            if status.version and self.data_plane.states.has_version_ready(
                status.model, status.version
            ):
                served.append((status.model, status.version))
        return served

    async def statistics_of(
        self, name: str | None = None, version: str | None = None
    ) -> dict[str, Any]:
        versions = await self._served(name, version)
        cache = self.response_cache
        lookups: dict[tuple[str, str], dict[str, Any]] = {}
        if cache is not None:
            for key in versions:
                found = cache.statistics(*key)
                lookups[key] = {
                    "cache_hit": {"count": found.hit_count, "ns": found.hit_ns},
                    "cache_miss": {"count": found.miss_count, "ns": found.miss_ns},
                }
        return self.statistics.snapshot(versions, lookups)
