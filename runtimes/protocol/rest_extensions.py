"""REST routes of Triton's extensions and health endpoints with small JSON bodies.

They are placed ahead of MLServer's routes, so that ``GET /v2/models/stats`` is the
statistics of every model (as in Triton) rather than the metadata of a model named
"stats"; such a model stays reachable through its versioned and infer routes.
"""

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.responses import JSONResponse

from ..dataplane import V2DataPlane
from ..extensions.handlers import ExtensionHandlers


def install_extension_routes(
    app: FastAPI, data_plane: V2DataPlane, extensions: ExtensionHandlers
) -> None:
    async def live() -> JSONResponse:
        return JSONResponse({"live": await data_plane.live()})

    async def ready() -> JSONResponse:
        is_ready = await data_plane.ready()
        return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)

    async def config(model_name: str, model_version: str | None = None) -> JSONResponse:
        return JSONResponse(await extensions.model_config(model_name, model_version))

    async def all_statistics() -> JSONResponse:
        return JSONResponse(await extensions.statistics_of())

    async def statistics(model_name: str, model_version: str | None = None) -> JSONResponse:
        return JSONResponse(await extensions.statistics_of(model_name, model_version))

    routes: list[tuple[str, Callable[..., Any]]] = [
        ("/v2/health/live", live),
        ("/v2/health/ready", ready),
        ("/v2/models/stats", all_statistics),
        ("/v2/models/{model_name}/config", config),
        ("/v2/models/{model_name}/versions/{model_version}/config", config),
        ("/v2/models/{model_name}/stats", statistics),
        ("/v2/models/{model_name}/versions/{model_version}/stats", statistics),
    ]
    for path, endpoint in reversed(routes):
        app.router.routes.insert(0, APIRoute(path, endpoint, methods=["GET"]))
