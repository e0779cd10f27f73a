"""REST routes of the repository extension (index, load, unload).

tritonclient posts an empty body to the index, which MLServer answered with 422; and a
model name holding an encoded slash reaches the handler (the name group takes slashes),
to be rejected with 400 rather than fall through to a 404.
"""

from mlserver.handlers import ModelRepositoryHandlers
from mlserver.types import RepositoryIndexRequest
from pydantic import ValidationError

from ..errors import InvalidPayload
from .rest_router import RestRequest, RestResponse, Route, json_response

_NAME = r"/v2/repository/models/(?P<model>.+)"


def repository_routes(handlers: ModelRepositoryHandlers) -> list[Route]:
    async def index(request: RestRequest) -> RestResponse:
        body = await request.body()
        try:
            payload = (
                RepositoryIndexRequest.model_validate_json(body)
                if body.strip()
                else RepositoryIndexRequest()
            )
        except ValidationError as exc:
            raise InvalidPayload(f"repository index: {exc.errors()[0]['msg']}") from exc
        found = await handlers.index(payload)
        return json_response(
            [
                {"name": i.name, "version": i.version or "", "state": i.state, "reason": i.reason}
                for i in found.root
            ]
        )

    async def load(request: RestRequest) -> RestResponse:
        await handlers.load(request.params["model"] or "")
        return json_response({})

    async def unload(request: RestRequest) -> RestResponse:
        await handlers.unload(request.params["model"] or "")
        return json_response({})

    return [
        Route("POST", "/v2/repository/index", index),
        Route("POST", f"{_NAME}/load", load),
        Route("POST", f"{_NAME}/unload", unload),
    ]
