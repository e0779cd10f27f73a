"""Every error class maps to an HTTP status and a gRPC code."""

import grpc
import pytest

from runtimes.errors import V2ServeError, all_error_classes
from runtimes.protocol.status import GRPC_CODE_BY_HTTP_STATUS


def test_hierarchy_is_found():
    names = {cls.__name__ for cls in all_error_classes()}
    assert {"InvalidInput", "ModelUnavailable", "PredictionFailed", "NotReady"} <= names
    # HTTP-level refusals (REST only) and JSON's non-finite outputs map too.
    assert {"MalformedRequest", "URLTooLong", "HeadersTooLarge", "NonFiniteOutput"} <= names


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
