"""REST routes of the V2 core protocol other than inference: health, server and model
metadata, model readiness. Each translates one DataPlane call; the answers keep
MLServer's shapes (fields that are unset or None are left out, as its routes did)."""

from pydantic import BaseModel

from ..dataplane import V2DataPlane
from .rest_router import MODEL, RestRequest, RestResponse, Route, json_response


def _model_json(model: BaseModel) -> RestResponse:
    return json_response(model.model_dump(mode="json", exclude_unset=True, exclude_none=True))


def data_plane_routes(data_plane: V2DataPlane) -> list[Route]:
    async def live(request: RestRequest) -> RestResponse:
        return json_response({"live": await data_plane.live()})

    async def ready(request: RestRequest) -> RestResponse:
        is_ready = await data_plane.ready()
        return json_response({"ready": is_ready}, status=200 if is_ready else 503)

    async def server_metadata(request: RestRequest) -> RestResponse:
        return _model_json(await data_plane.metadata())

    async def model_metadata(request: RestRequest) -> RestResponse:
        name, version = request.params["model"] or "", request.params["version"]
        return _model_json(await data_plane.model_metadata(name, version))

    async def model_ready(request: RestRequest) -> RestResponse:
        name, version = request.params["model"] or "", request.params["version"]
        # MLServer's answer: an empty 200 when ready, 400 when it is not.
        return RestResponse(200 if await data_plane.model_ready(name, version) else 400)

    return [
        Route("GET", "/v2/health/live", live),
        Route("GET", "/v2/health/ready", ready),
        Route("GET", "/v2", server_metadata),
        Route("GET", f"{MODEL}/ready", model_ready),
        Route("GET", MODEL, model_metadata),
    ]
