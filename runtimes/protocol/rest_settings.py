"""REST routes of Triton's trace and logging extensions:
``GET|POST /v2/trace/setting``, ``GET|POST /v2/models/{m}/trace/setting``,
``GET|POST /v2/logging``.

A POST body is a JSON object of the settings to change (empty: change nothing, as
Triton's ``EVRequestToJsonAllowsEmpty``); the answer is every setting after the change.
Trace values are strings, or lists of strings for ``trace_level`` (a JSON integer is taken
as its digits); log values are JSON booleans, integers and strings.
"""

from typing import Any

import orjson

from ..errors import InvalidPayload, InvalidSetting
from ..extensions.log_settings import EXTENSION as LOG
from ..extensions.log_settings import LogSettings, LogValue
from ..extensions.trace_settings import EXTENSION as TRACE
from ..extensions.trace_settings import TraceSettings
from .rest_router import RestRequest, RestResponse, Route, json_response


async def _body_object(request: RestRequest, what: str) -> dict[str, Any]:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidPayload(f"the {what} body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidPayload(f"the {what} body must be a JSON object of settings")
    return document


def _trace_value(key: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, int) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise InvalidSetting(TRACE, key, f"expected a string or a list of strings, got {value!r}")


def _log_value(key: str, value: Any) -> LogValue:
    """JSON's scalar types as they come; the extension checks each against its key."""
    if value is None or isinstance(value, bool | int | str):
        return value
    raise InvalidSetting(LOG, key, f"expected a boolean, an integer or a string, got {value!r}")


def settings_routes(trace: TraceSettings, log: LogSettings) -> list[Route]:
    async def trace_setting(request: RestRequest) -> RestResponse:
        model = request.params.get("model")
        update = None
        if request.scope["method"] == "POST":
            document = await _body_object(request, "trace setting")
            update = {key: _trace_value(key, value) for key, value in document.items()}
        return json_response(await trace.settings(model, update))

    async def logging(request: RestRequest) -> RestResponse:
        update = None
        if request.scope["method"] == "POST":
            document = await _body_object(request, "log setting")
            update = {key: _log_value(key, value) for key, value in document.items()}
        return json_response(log.settings(update))

    model_trace = r"/v2/models/(?P<model>[^/]+)/trace/setting"
    return [
        Route("GET", "/v2/trace/setting", trace_setting),
        Route("POST", "/v2/trace/setting", trace_setting),
        Route("GET", model_trace, trace_setting),
        Route("POST", model_trace, trace_setting),
        Route("GET", "/v2/logging", logging),
        Route("POST", "/v2/logging", logging),
    ]
