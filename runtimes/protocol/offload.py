"""Large request bodies decoded off the event loop, so one does not stall every request.

A body above ``offload_body_bytes`` (1 MiB by default) is decoded elsewhere:

- its JSON part in a helper process (``json_bulk``). orjson holds the interpreter lock
  for the whole parse, so a thread would not help: a 43 MB body held every model for
  3.2 s (issue 18). The process also turns numeric data into arrays with validation's
  checks, and only arrays come back;
- decompression, the binary tensor part and building the request in a thread: zlib and
  numpy's copies release the lock or take little of it;
- a large gRPC ModelInferRequest in a helper process too (``grpc.message_bulk``): protobuf's
  parser holds the lock for the whole parse, 40-75 ms for 40 MB.

Everything here is pure: decoding reads the body and builds new objects, and validation
of the decoded tensors happens later in the runtime, as for a small body. The helper
process starts on the first large body; if it dies, that body is parsed in a thread and
the next one starts a new process.
"""

import asyncio
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from ..errors import InvalidInput, InvalidPayload
from .json_bulk import DataProblem, JsonProblem, load_document

logger = logging.getLogger("v2serve.protocol")

T = TypeVar("T")

COMPRESSION_RATIO = 16
"""A compressed body counts as this many times its size: JSON numbers gzip 3-10x."""


class BodyOffload:
    def __init__(self, threshold: int):
        self.threshold = threshold
        self._pool: ProcessPoolExecutor | None = None

    def large(self, size: int) -> bool:
        return size > self.threshold

    async def load_json(self, model: str, json_part: bytes) -> Any:
        """The parsed document, numeric data as arrays; errors as the codec raises them."""
        return _raise_problems(model, await self.run(load_document, json_part, "JSON body"))

    async def run(self, parse: Callable[[bytes], T], body: bytes, what: str) -> T:
        """``parse(body)`` in the helper process; in a thread if the process died."""
        try:
            return await asyncio.wrap_future(self._process().submit(parse, body))
        except BrokenProcessPool:
            logger.warning("the helper process died; parsing this %s in a thread", what)
            self._pool = None
            return await asyncio.to_thread(parse, body)

    def _process(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the server runs gRPC and executor threads.
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _raise_problems(model: str, document: Any) -> Any:
    if isinstance(document, JsonProblem):
        raise InvalidPayload(f"the body is not valid JSON: {document.message}")
    inputs = document.get("inputs") if isinstance(document, dict) else None
    for item in inputs if isinstance(inputs, list) else ():
        data = item.get("data") if isinstance(item, dict) else None
        if isinstance(data, DataProblem) and isinstance(item.get("name"), str):
            raise InvalidInput(model, item["name"], data.rule, data.expected, data.got)
    return document
