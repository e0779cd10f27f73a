"""tritonclient over both protocols behind one small call shape, for parametrized tests."""

from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

_NUMPY_TO_DATATYPE = {"f": "FP64", "i": "INT64", "O": "BYTES", "U": "BYTES"}


def make_client(protocol: str, server: Any, network_timeout: float = 60.0) -> Any:
    """``network_timeout``: the HTTP client's (tritonclient's default, 60 s); gRPC calls
    have no deadline unless a test gives one."""
    if protocol == "http":
        return httpclient.InferenceServerClient(
            url=server.http_url, network_timeout=network_timeout
        )
    return grpcclient.InferenceServerClient(url=server.grpc_url)


def infer(
    protocol: str,
    client: Any,
    model: str,
    inputs: dict[str, np.ndarray],
    outputs: list[str] | None = None,
    version: str = "",
) -> Any:
    module = httpclient if protocol == "http" else grpcclient
    tensors = []
    for name, array in inputs.items():
        datatype = (
            "BYTES"
            if array.dtype.kind in "OU"
            else ("FP64" if array.dtype.kind == "f" else "INT64")
        )
        tensor = module.InferInput(name, list(array.shape), datatype)
        if protocol == "http":
            tensor.set_data_from_numpy(
                array.astype(object) if datatype == "BYTES" else array, binary_data=False
            )
        else:
            tensor.set_data_from_numpy(array.astype(object) if datatype == "BYTES" else array)
        tensors.append(tensor)
    requested = None
    if outputs is not None:
        if protocol == "http":
            requested = [module.InferRequestedOutput(o, binary_data=False) for o in outputs]
        else:
            requested = [module.InferRequestedOutput(o) for o in outputs]
    return client.infer(model, tensors, model_version=version, outputs=requested)


def metadata(protocol: str, client: Any, model: str, version: str = "") -> dict[str, Any]:
    if protocol == "http":
        return dict(client.get_model_metadata(model, model_version=version))
    return dict(client.get_model_metadata(model, model_version=version, as_json=True))
