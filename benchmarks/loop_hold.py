"""How long a large gRPC parse and a cache hash hold the interpreter (docs/reliability.md),
and how long the event loop waits while the server takes a large gRPC message: parsed on
the loop (as grpcio's deserializer did) or split in the helper process (``message_bulk``).

Run from the repository root: `.venv/bin/python -m benchmarks.loop_hold`. Figures vary with
the machine's load: another thread's wait includes the scheduler's delays.
"""

import asyncio
import statistics
import threading
import time

import numpy as np

from runtimes.cache.key import request_digest
from runtimes.protocol.grpc.convert import to_inference_request
from runtimes.protocol.grpc.message_bulk import SplitMessage, scan_message, split_message
from runtimes.protocol.grpc.messages import message
from runtimes.protocol.offload import BodyOffload

Request = message("ModelInferRequest")


def wire(raw: bool) -> bytes:
    values = np.random.rand(4_000_000)
    request = Request(model_name="m")
    tensor = request.inputs.add(name="i", datatype="FP64", shape=[1_000_000, 4])
    if raw:
        request.raw_input_contents.append(values.tobytes())
    else:
        tensor.contents.fp64_contents.extend(values)
    return request.SerializeToString()


def longest_gap(work, *args) -> float:
    """ms: the longest another thread waited while ``work`` ran in a thread."""
    gaps, done = [], threading.Event()

    def tick():
        last = time.perf_counter()
        while not done.is_set():
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
            time.sleep(0.0005)

    ticker = threading.Thread(target=tick)
    ticker.start()
    time.sleep(0.05)
    gaps.clear()
    worker = threading.Thread(target=work, args=args)
    worker.start()
    worker.join()
    done.set()
    ticker.join()
    return max(gaps) * 1e3


async def loop_wait(take) -> float:
    """ms: the longest an event loop task waited (it asks to wake every 0.5 ms) while
    ``take()`` was awaited on the same loop."""
    gaps: list[float] = []

    async def tick() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.0005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    gaps.clear()
    await take()
    await asyncio.sleep(0.01)
    ticker.cancel()
    return max(gaps) * 1e3


async def compare_loop_waits(data: bytes, rounds: int = 15) -> dict[str, list[float]]:
    """Alternating rounds of each way to take ``data``: ms the loop waited."""
    offload = BodyOffload(0)

    async def on_loop() -> None:
        Request.FromString(data)

    async def convert(parts: object) -> None:
        assert isinstance(parts, SplitMessage)
        remainder = Request.FromString(parts.remainder)
        await asyncio.to_thread(to_inference_request, remainder, {}, parts.bulk)

    async def scanned() -> None:
        await convert(await asyncio.to_thread(scan_message, data))

    async def in_helper() -> None:
        await convert(await offload.run(split_message, data, "gRPC message"))

    ways = {"parsed on the loop": on_loop, "scanned in a thread": scanned,
            "split in the helper process": in_helper}  # fmt: skip
    await in_helper()  # the first large message starts the helper process
    waits: dict[str, list[float]] = {name: [] for name in ways}
    try:
        for _ in range(rounds):
            for name, take in ways.items():
                waits[name].append(await loop_wait(take))
    finally:
        offload.close()
    return waits


def main() -> None:
    for raw in (True, False):
        data = wire(raw)
        started = time.perf_counter()
        Request.FromString(data)
        print(
            f"grpc parse, {'raw_input_contents' if raw else 'fp64_contents'} "
            f"{len(data) >> 20} MiB: "
            f"{(time.perf_counter() - started) * 1e3:.0f} ms; in a thread, another thread waited "
            f"{longest_gap(Request.FromString, data):.0f} ms"
        )
        waits = asyncio.run(compare_loop_waits(data))
        print("  the event loop's longest wait, median (max) of alternating rounds:")
        for name, found in waits.items():
            print(f"    {name}: {statistics.median(found):.1f} ({max(found):.1f}) ms")
    rows = {"i": np.random.rand(1_000_000, 5)}
    started = time.perf_counter()
    request_digest(rows, ["p"])
    print(
        f"cache hash, 40 MB: {(time.perf_counter() - started) * 1e3:.0f} ms; in a thread, "
        f"another thread waited {longest_gap(request_digest, rows, ['p']):.1f} ms"
    )


if __name__ == "__main__":  # the helper process is spawned: it imports this module
    main()
