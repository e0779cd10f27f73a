"""REST routes of the repository extension, in place of MLServer's.

tritonclient posts an empty body to the index, which MLServer answers with 422; and a
model name holding an encoded slash must reach the handler, to be rejected with 400
rather than fall through to a 404.
"""

from fastapi import FastAPI, Request
from mlserver.handlers import ModelRepositoryHandlers
from mlserver.types import RepositoryIndexRequest
from pydantic import ValidationError
from starlette.responses import JSONResponse, Response

from ..errors import InvalidPayload

INDEX = "/v2/repository/index"
LOAD = "/v2/repository/models/{model_name:path}/load"
UNLOAD = "/v2/repository/models/{model_name:path}/unload"


def install_repository_routes(app: FastAPI, handlers: ModelRepositoryHandlers) -> None:
    async def index(request: Request) -> Response:
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
        return JSONResponse(
            [
                {"name": i.name, "version": i.version or "", "state": i.state, "reason": i.reason}
                for i in found.root
            ]
        )

    async def load(model_name: str) -> Response:
        await handlers.load(model_name)
        return JSONResponse({})

    async def unload(model_name: str) -> Response:
        await handlers.unload(model_name)
        return JSONResponse({})

    prefix = "/v2/repository/"
    app.router.routes[:] = [
        route for route in app.router.routes if not getattr(route, "path", "").startswith(prefix)
    ]
    app.add_api_route(INDEX, index, methods=["POST"])
    app.add_api_route(LOAD, load, methods=["POST"])
    app.add_api_route(UNLOAD, unload, methods=["POST"])
