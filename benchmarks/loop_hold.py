"""How long a large gRPC parse and a cache hash hold the interpreter (docs/reliability.md).

Run from the repository root: `.venv/bin/python -m benchmarks.loop_hold`. Figures vary with
the machine's load: another thread's wait includes the scheduler's delays.
"""

import threading
import time

import numpy as np

from runtimes.cache.key import request_digest
from runtimes.protocol.grpc.messages import message

Request = message("ModelInferRequest")
values = np.random.rand(4_000_000)


def wire(raw: bool) -> bytes:
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


for raw in (True, False):
    data = wire(raw)
    started = time.perf_counter()
    Request.FromString(data)
    print(
        f"grpc parse, {'raw_input_contents' if raw else 'fp64_contents'} {len(data) >> 20} MiB: "
        f"{(time.perf_counter() - started) * 1e3:.0f} ms; in a thread, another thread waited "
        f"{longest_gap(Request.FromString, data):.0f} ms"
    )
rows = {"i": np.random.rand(1_000_000, 5)}
started = time.perf_counter()
request_digest(rows, ["p"])
print(
    f"cache hash, 40 MB: {(time.perf_counter() - started) * 1e3:.0f} ms; in a thread, "
    f"another thread waited {longest_gap(request_digest, rows, ['p']):.1f} ms"
)
