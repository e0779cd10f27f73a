"""The REST application: every V2 route on v2serve's router, behind its guards.

From the outside in: CORS (so preflights and refusals carry its headers), the control
token on the control APIs, the body-size cap, then the router.
"""

from mlserver.handlers import ModelRepositoryHandlers
from mlserver.settings import CORSSettings

from ..dataplane import V2DataPlane
from ..extensions.handlers import ExtensionHandlers
from ..extensions.log_settings import LogSettings
from ..extensions.trace_settings import TraceSettings
from .asgi import ASGIApp
from .control_auth import ControlTokenMiddleware
from .cors import CorsMiddleware
from .limits import BodySizeLimit
from .offload import BodyOffload
from .rest_dataplane import data_plane_routes
from .rest_extensions import extension_routes
from .rest_fastpath import infer_routes
from .rest_repository import repository_routes
from .rest_router import RestRouter, Route
from .rest_settings import settings_routes


def build_rest_app(
    data_plane: V2DataPlane,
    extensions: ExtensionHandlers,
    repository: ModelRepositoryHandlers,
    max_request_size: int,
    control_token: str | None = None,
    cors: CORSSettings | None = None,
    trace_settings: TraceSettings | None = None,
    log_settings: LogSettings | None = None,
    offload: BodyOffload | None = None,
) -> ASGIApp:
    settings: list[Route] = []
    if trace_settings is not None and log_settings is not None:
        settings = settings_routes(trace_settings, log_settings)
    routes = [
        *infer_routes(data_plane, offload),
        # Before the metadata route: /v2/models/stats is not a model called "stats".
        *extension_routes(extensions),
        *data_plane_routes(data_plane),
        *repository_routes(repository),
        *settings,
    ]
    app: ASGIApp = RestRouter(routes, max_request_size)
    app = BodySizeLimit(app, max_bytes=max_request_size)
    if control_token:
        app = ControlTokenMiddleware(app, token=control_token)
    if cors is not None:
        app = CorsMiddleware(app, cors)
    return app
