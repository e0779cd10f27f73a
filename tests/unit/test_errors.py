"""Every error class maps to an HTTP status and a gRPC code."""

import grpc
import pytest

from runtimes.errors import V2ServeError, all_error_classes
from runtimes.protocol.status import GRPC_CODE_BY_HTTP_STATUS


def test_hierarchy_is_found():
    names = {cls.__name__ for cls in all_error_classes()}
    assert {"InvalidInput", "ModelUnavailable", "PredictionFailed", "NotReady"} <= names


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_maps_in_both_protocols(cls: type[V2ServeError]):
    assert 400 <= cls.status_code < 600
    assert isinstance(GRPC_CODE_BY_HTTP_STATUS.get(cls.status_code), grpc.StatusCode)
    assert GRPC_CODE_BY_HTTP_STATUS[cls.status_code] is not grpc.StatusCode.UNKNOWN


def test_installed_mapping_reaches_mlserver():
    from mlserver.grpc import utils

    from runtimes.protocol.status import install_grpc_status_mapping

    install_grpc_status_mapping()
    assert utils.STATUS_CODE_MAPPING[503] is grpc.StatusCode.UNAVAILABLE


def _example(cls: type[V2ServeError]) -> V2ServeError:
    """An instance of any class, built from its own constructor with string arguments."""
    import inspect

    parameters = [
        p for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.default is inspect.Parameter.empty
    ]  # fmt: skip
    values: dict[str, object] = {p.name: ValueError("x") if p.name == "cause" else "x"
                                 for p in parameters}  # fmt: skip
    if "limit" in values:
        values["limit"] = 1
    if "size" in values:
        values["size"] = 2
    if "offered" in values:
        values["offered"] = ["a"]
    return cls(**values)


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_renders_over_grpc_with_its_mapped_code(cls: type[V2ServeError]):
    from runtimes.protocol.grpc.errors import grpc_status

    error = _example(cls)
    code, message = grpc_status(error)
    assert code is GRPC_CODE_BY_HTTP_STATUS[cls.status_code]
    assert message == str(error)


def test_an_unexpected_exception_renders_as_internal_and_bounded():
    from runtimes.protocol.grpc.errors import MESSAGE_LIMIT, grpc_status

    code, message = grpc_status(KeyError("k" * 50_000))
    assert code is grpc.StatusCode.INTERNAL
    assert message.startswith("internal error: KeyError: ") and len(message) == MESSAGE_LIMIT


def test_clip_bounds_client_values_with_an_ellipsis():
    from runtimes.errors import CLIP_LIMIT, ModelUnavailable, clip

    assert clip("short") == "short"
    assert clip("a" * CLIP_LIMIT) == "a" * CLIP_LIMIT
    long = clip("a" * 20_000)
    assert len(long) == CLIP_LIMIT and long.endswith("…")
    message = str(ModelUnavailable("m" * 20_000, "v" * 20_000, ["1"]))
    assert len(message) < 3 * CLIP_LIMIT and "m" * 150 in message and "v" * 150 in message
