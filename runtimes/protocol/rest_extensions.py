"""REST routes of Triton's statistics and model configuration extensions.

They come before the model metadata route, so that ``GET /v2/models/stats`` is the
statistics of every model (as in Triton) rather than the metadata of a model named
"stats"; such a model stays reachable through its versioned and infer routes.
"""

from ..extensions.handlers import ExtensionHandlers
from .rest_router import MODEL, RestRequest, RestResponse, Route, json_response


def extension_routes(extensions: ExtensionHandlers) -> list[Route]:
    async def config(request: RestRequest) -> RestResponse:
        name, version = request.params["model"] or "", request.params["version"]
        return json_response(await extensions.model_config(name, version))

    async def all_statistics(request: RestRequest) -> RestResponse:
        return json_response(await extensions.statistics_of())

    async def statistics(request: RestRequest) -> RestResponse:
        name, version = request.params["model"] or "", request.params["version"]
        return json_response(await extensions.statistics_of(name, version))

    return [
        Route("GET", "/v2/models/stats", all_statistics),
        Route("GET", f"{MODEL}/config", config),
        Route("GET", f"{MODEL}/stats", statistics),
    ]
