"""The cache key: a digest of what determines the answer, and of nothing else.

It is computed from the tensors *after* validation has decoded them to the schema's
numpy dtypes, so JSON spelling (``[0, 1]`` or ``[0.0, 1.0]`` for FP64), binary or JSON
encoding, REST or gRPC, the request id and headers cannot change it. Model, version and
load instance are the scope (see ``backend``), outside the digest. No request parameter
changes what the runtime computes today; one that does must be added here.

BLAKE2b with a 128-bit digest: fast, and collisions are not a practical concern.
"""

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

DIGEST_SIZE = 16


def named_tensors(features: np.ndarray | pd.DataFrame, input_name: str) -> dict[str, np.ndarray]:
    """The decoded estimator input as named arrays: one array, or one per column."""
    if isinstance(features, pd.DataFrame):
        return {str(name): features[name].to_numpy() for name in features.columns}
    return {input_name: features}


def input_bytes(tensors: Mapping[str, np.ndarray]) -> int:
    """About the bytes ``request_digest`` reads: an object array's values count 8 each
    at least (each is hashed as its text, in a Python loop, which costs more)."""
    return sum(array.nbytes for array in tensors.values())


def _update_text(digest: "hashlib.blake2b", text: str) -> None:
    encoded = text.encode("utf-8")
    digest.update(len(encoded).to_bytes(8, "little"))
    digest.update(encoded)


def request_digest(tensors: Mapping[str, np.ndarray], outputs: Sequence[str]) -> bytes:
    """Inputs by name (name, dtype, shape, data), then the requested outputs in order."""
    digest = hashlib.blake2b(digest_size=DIGEST_SIZE)
    digest.update(len(tensors).to_bytes(8, "little"))
    for name in sorted(tensors):
        array = tensors[name]
        _update_text(digest, name)
        _update_text(digest, array.dtype.str)
        _update_text(digest, ",".join(str(d) for d in array.shape))
        if array.dtype == object:
            for value in array.reshape(-1):
                _update_text(digest, str(value))
        else:
            digest.update(np.ascontiguousarray(array).data)
    digest.update(len(outputs).to_bytes(8, "little"))
    for output in outputs:
        _update_text(digest, output)
    return digest.digest()
