"""A parse that kills the helper process it runs in (tests/unit/test_offload.py)."""

import multiprocessing
import os


def reversed_unless_in_a_helper(body: bytes) -> bytes:
    if multiprocessing.parent_process() is not None:
        os._exit(3)  # as an out-of-memory kill would end it
    return body[::-1]
