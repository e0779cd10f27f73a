"""The helper process of large bodies (runtimes.protocol.offload): a process that dies."""

import asyncio

from runtimes.protocol.offload import BodyOffload

from .helper_exit import reversed_unless_in_a_helper


def test_a_helper_process_that_dies_falls_back_to_a_thread_and_is_replaced():
    offload = BodyOffload(0)

    async def twice() -> list[bytes]:
        first = await offload.run(reversed_unless_in_a_helper, b"ab", "test body")
        assert offload._pool is None  # dropped: the next large body starts a new one
        second = await offload.run(reversed_unless_in_a_helper, b"cd", "test body")
        return [first, second]

    try:
        assert asyncio.run(twice()) == [b"ba", b"dc"]
    finally:
        offload.close()
