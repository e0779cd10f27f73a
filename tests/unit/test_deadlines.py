"""Deadlines in-process: the value, the caller, the wire parsing, and where requests wait
(the data plane's admission, the batching queue). No sockets, no sleeps."""

import asyncio
import math
import pickle
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlserver.settings import ModelParameters, ModelSettings, Settings
from mlserver.types import InferenceRequest, Parameters, RequestInput

from runtimes.batching import MicroBatcher
from runtimes.dataplane import V2DataPlane
from runtimes.deadlines import CANCEL_GRACE, Caller, Deadline, attach, caller_of, earliest
from runtimes.errors import CallerGone, DeadlineExceeded, InvalidPayload
from runtimes.extensions.statistics import Statistics
from runtimes.observability.observer import RequestObserver
from runtimes.protocol.status import GRPC_CODE_BY_HTTP_STATUS
from runtimes.protocol.timeouts import disconnected, grpc_caller, timeout_seconds
from runtimes.settings import ServerOptions, parse_model_extra

from .grpc_context import FakeContext
from .in_process import release_metrics
from .repository_support import GATES, TinyModel, make_lifecycle, reset_gates

times = st.floats(min_value=0, max_value=1e9, allow_nan=False)


# The value


@given(expires=times, now=times)
def test_a_deadline_is_expired_from_its_moment_on_and_never_has_negative_time_left(
    expires: float, now: float
) -> None:
    deadline = Deadline(expires)
    assert deadline.expired(now) == (now >= expires)
    assert deadline.remaining(now) == max(0.0, expires - now)
    assert Deadline.after(5, now=now) == Deadline(now + 5)


@given(st.lists(st.one_of(st.none(), times.map(Deadline))))
def test_earliest_ignores_missing_deadlines(deadlines: list[Deadline | None]) -> None:
    given_ = [d for d in deadlines if d is not None]
    found = earliest(*deadlines)
    if not given_:
        assert found is None
    else:
        assert found is not None
        assert found.expires_at == min(d.expires_at for d in given_)


def test_the_model_default_applies_only_to_a_request_that_brought_no_deadline() -> None:
    bare = Caller("m", arrived=100.0)
    assert bare.with_default(None) is bare and bare.with_default(0) is bare
    defaulted = bare.with_default(250)
    assert defaulted.deadline == Deadline(100.25)
    own = Caller("m", arrived=100.0, deadline=Deadline(100.1))
    assert own.with_default(250) is own


def test_a_caller_is_abandoned_when_its_deadline_passed_or_it_left() -> None:
    left = {"gone": False}
    caller = Caller("m", 10.0, Deadline(11.0), gone=lambda: left["gone"])
    assert not caller.abandoned(now=10.5)
    assert caller.abandoned(now=11.0)
    left["gone"] = True
    assert caller.abandoned(now=10.5) and caller.gone()
    assert not Caller("m", 10.0).abandoned(now=1e12)


def test_a_dropped_request_is_a_504_naming_the_model_or_a_499_when_the_caller_left() -> None:
    expired = Caller("iris", 10.0, Deadline(10.3)).dropped("in the batching queue", now=10.5)
    assert isinstance(expired, DeadlineExceeded) and expired.status_code == 504
    assert str(expired) == (
        "model 'iris': the request's deadline of 0.300 s passed after 0.500 s; "
        "it was dropped in the batching queue and not run"
    )
    gone = Caller("iris", 10.0, Deadline(99.0), gone=lambda: True).dropped("here", now=10.5)
    assert isinstance(gone, CallerGone) and gone.status_code == 499
    assert "model 'iris'" in str(gone) and "went away" in str(gone)
    assert GRPC_CODE_BY_HTTP_STATUS[504].name == "DEADLINE_EXCEEDED"
    assert GRPC_CODE_BY_HTTP_STATUS[499].name == "CANCELLED"


def test_a_cancelled_call_counts_as_a_timeout_only_past_its_deadline() -> None:
    caller = Caller("m", 10.0, Deadline(11.0))
    assert caller.timed_out("the call was cancelled", now=10.5) is None
    assert caller.timed_out("the call was cancelled", now=11.0 - CANCEL_GRACE - 0.01) is None
    # A client gives up at its own deadline, which starts before the server's clock does.
    early = caller.timed_out("the call was cancelled", now=11.0 - CANCEL_GRACE / 2)
    assert isinstance(early, DeadlineExceeded)
    found = caller.timed_out("the call was cancelled", now=11.5)
    assert isinstance(found, DeadlineExceeded) and "the call was cancelled" in str(found)
    assert Caller("m", 10.0).timed_out("x", now=1e9) is None


def test_a_caller_travels_to_another_process_with_its_deadline_but_not_its_probe() -> None:
    caller = Caller("m", 10.0, Deadline(11.0), gone=lambda: True)
    copy = pickle.loads(pickle.dumps(caller))
    assert (copy.model, copy.arrived, copy.deadline) == ("m", 10.0, Deadline(11.0))
    assert not copy.gone()


def test_the_caller_rides_on_the_request_and_is_never_dumped() -> None:
    payload = InferenceRequest(
        inputs=[RequestInput(name="x", shape=[1], datatype="FP64", data=[1])]
    )
    assert caller_of(payload) is None
    caller = Caller("m", 1.0, Deadline(2.0))
    attach(payload, caller)
    assert caller_of(payload) is caller
    assert "caller" not in payload.model_dump_json()
    travelled = caller_of(pickle.loads(pickle.dumps(payload)))
    assert travelled is not None and travelled.deadline == Deadline(2.0)


# default_timeout_ms


def test_default_timeout_ms_is_off_by_default_and_must_be_positive() -> None:
    assert parse_model_extra({}, "m").default_timeout_ms is None
    assert parse_model_extra({"default_timeout_ms": 250}, "m").default_timeout_ms == 250
    with pytest.raises(Exception, match="default_timeout_ms"):
        parse_model_extra({"default_timeout_ms": 0}, "m")


# Triton's timeout parameter


@given(st.integers(min_value=0, max_value=2**64))
def test_a_non_negative_integer_timeout_is_microseconds_and_zero_means_none(value: int) -> None:
    seconds = timeout_seconds("m", Parameters(timeout=value))
    assert seconds == (value / 1_000_000 if value else None)


@given(
    st.one_of(
        st.integers(max_value=-1),
        st.floats(allow_nan=True),
        st.text(),
        st.booleans(),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    )
)
def test_any_other_timeout_is_a_400_that_names_it(value: Any) -> None:
    with pytest.raises(InvalidPayload) as raised:
        timeout_seconds("iris", Parameters(timeout=value))
    assert raised.value.status_code == 400
    assert "'timeout'" in str(raised.value) and "model 'iris'" in str(raised.value)


def test_no_timeout_parameter_is_no_deadline() -> None:
    assert timeout_seconds("m", None) is None
    assert timeout_seconds("m", Parameters()) is None
    assert timeout_seconds("m", Parameters(content_type="np")) is None


def test_over_grpc_the_earlier_of_the_grpc_deadline_and_the_parameter_wins() -> None:
    context = FakeContext(time_remaining=2.0)
    with_param = grpc_caller("m", Parameters(timeout=500_000), 100.0, context)
    assert with_param.deadline is not None and with_param.deadline.expires_at == 100.5
    grpc_only = grpc_caller("m", None, 100.0, context)
    assert grpc_only.deadline is not None and grpc_only.deadline.expires_at > 100.5
    assert grpc_caller("m", None, 100.0, FakeContext()).deadline is None
    assert not grpc_only.gone()
    context.is_cancelled = True
    assert grpc_only.gone()


def test_the_rest_probe_sees_a_disconnect_and_leaves_an_open_connection_as_it_was() -> None:
    async def scenario() -> None:
        message_ready = asyncio.Event()
        waiters: list[int] = []

        async def open_receive() -> dict[str, Any]:
            # As uvicorn's receive() once the body is read: wait for the next event.
            waiters.append(1)
            try:
                await message_ready.wait()
            finally:
                waiters.pop()
            return {"type": "http.disconnect"}

        probe = disconnected(open_receive)
        assert probe() is False
        assert waiters == [] and not message_ready.is_set()
        message_ready.set()  # connection_lost: the event is ready at once
        assert probe() is True

        async def more_body() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        assert disconnected(more_body)() is False

        async def broken() -> dict[str, Any]:
            raise RuntimeError("a middleware's receive failed")

        assert disconnected(broken)() is False

    asyncio.run(scenario())


# The batching queue


class Held:
    """A compute that records its rows and holds each call until the test lets it go."""

    def __init__(self) -> None:
        self.rows: list[float] = []
        self.entered = threading.Event()
        self.go = threading.Event()

    def __call__(self, features: Any, methods: list[str]) -> dict[str, np.ndarray]:
        self.rows.extend(np.asarray(features)[:, 0].tolist())
        self.entered.set()
        assert self.go.wait(30)
        return {m: np.asarray(features)[:, 0] for m in methods}


def test_a_queued_request_past_its_deadline_or_without_its_caller_is_dropped_unrun() -> None:
    held = Held()
    batcher = MicroBatcher(held, max_rows=64)
    left = {"gone": False}

    async def scenario() -> list[Any]:
        running = asyncio.ensure_future(
            batcher.submit(
                np.array([[1.0]]), ["predict"], Caller("m", 0.0, gone=lambda: left["gone"])
            )
        )
        await asyncio.to_thread(held.entered.wait, 30)
        queued = [
            batcher.submit(np.array([[2.0]]), ["predict"], Caller("m", 0.0, Deadline(0.0))),
            batcher.submit(np.array([[3.0]]), ["predict"], Caller("m", 0.0, gone=lambda: True)),
            batcher.submit(np.array([[4.0]]), ["predict"], Caller("m", 0.0, Deadline(math.inf))),
            batcher.submit(np.array([[5.0]]), ["predict"]),
        ]
        tasks = [asyncio.ensure_future(call) for call in queued]
        for _ in range(5):
            await asyncio.sleep(0)
        left["gone"] = True  # the running request's caller leaves: it completes anyway
        held.go.set()
        return await asyncio.gather(running, *tasks, return_exceptions=True)

    running, expired, gone, patient, plain = asyncio.run(scenario())
    assert running["predict"].tolist() == [1.0]
    assert isinstance(expired, DeadlineExceeded) and "batching queue" in str(expired)
    assert isinstance(gone, CallerGone)
    assert patient["predict"].tolist() == [4.0] and plain["predict"].tolist() == [5.0]
    assert sorted(held.rows) == [1.0, 4.0, 5.0]
    assert batcher._callers == {}


def test_a_cancelled_waiter_is_not_run() -> None:
    held = Held()
    batcher = MicroBatcher(held, max_rows=64)

    async def scenario() -> None:
        running = asyncio.ensure_future(batcher.submit(np.array([[1.0]]), ["predict"]))
        await asyncio.to_thread(held.entered.wait, 30)
        queued = asyncio.ensure_future(batcher.submit(np.array([[2.0]]), ["predict"]))
        await asyncio.sleep(0)
        queued.cancel()
        held.go.set()
        await running
        with pytest.raises(asyncio.CancelledError):
            await queued

    asyncio.run(scenario())
    assert held.rows == [1.0]


# Admission in the data plane


class Recording(RequestObserver):
    def __init__(self) -> None:
        super().__init__()
        self.errors: list[BaseException | None] = []

    def ended(
        self, name: Any, model: Any, rows: Any, request_id: Any, error: Any, *rest: Any
    ) -> None:
        self.errors.append(error)


@pytest.fixture
def plane_for() -> Iterator[Callable[[Any, RequestObserver], V2DataPlane]]:
    made: list[V2DataPlane] = []

    def build(lifecycle: Any, observer: RequestObserver) -> V2DataPlane:
        plane = V2DataPlane(
            Settings(),
            lifecycle.registry,
            lifecycle.states,
            ServerOptions(),
            lifecycle.inflight,
            Statistics(),
            observer,
        )
        made.append(plane)
        return plane

    yield build
    for plane in made:
        release_metrics(plane)


def _request(caller: Caller) -> InferenceRequest:
    payload = InferenceRequest(
        inputs=[RequestInput(name="x", shape=[1], datatype="FP64", data=[1])]
    )
    attach(payload, caller)
    return payload


@pytest.fixture
def loaded(tmp_path: Path) -> Any:
    reset_gates()
    folder = tmp_path / "m" / "1"
    folder.mkdir(parents=True)
    (folder / "model.joblib").write_text("ok")
    settings = ModelSettings(
        name="m", implementation=TinyModel, parameters=ModelParameters(version="1", uri=str(folder))
    )
    lifecycle = make_lifecycle(tmp_path)
    asyncio.run(lifecycle.load(settings))
    return lifecycle


def test_a_request_past_its_deadline_is_dropped_before_the_model_and_counted_as_failed(
    loaded, plane_for
):
    observer = Recording()
    plane = plane_for(loaded, observer)
    GATES[("m", "predict-1")] = asyncio.Event()  # never set: a call to predict would hang

    async def scenario() -> None:
        with pytest.raises(DeadlineExceeded, match="before reaching the model"):
            await asyncio.wait_for(plane.infer(_request(Caller("m", 0.0, Deadline(0.0))), "m"), 30)

    asyncio.run(scenario())
    [stats] = plane.statistics.snapshot([("m", "1")], {})["model_stats"]
    assert stats["inference_stats"]["fail"]["count"] == 1 and stats["execution_count"] == 0
    assert isinstance(observer.errors[-1], DeadlineExceeded)
    assert loaded.inflight.count(asyncio.run(loaded.registry.get_model("m", "1"))) == 0


def test_a_call_cancelled_after_its_deadline_is_recorded_as_a_timeout(loaded, plane_for):
    observer = Recording()
    plane = plane_for(loaded, observer)
    GATES[("m", "predict-1")] = asyncio.Event()
    deadline = Deadline(math.inf)

    async def scenario() -> None:
        caller = Caller("m", 0.0, deadline)
        running = asyncio.ensure_future(plane.infer(_request(caller), "m"))
        for _ in range(20):
            await asyncio.sleep(0)
        caller.deadline = Deadline(0.0)  # the deadline passes while it runs
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        cancelled = asyncio.ensure_future(plane.infer(_request(Caller("m", 0.0, deadline)), "m"))
        for _ in range(20):
            await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled

    asyncio.run(scenario())
    timed_out, cancelled = observer.errors[-2:]
    assert isinstance(timed_out, DeadlineExceeded) and "cancelled" in str(timed_out)
    assert isinstance(cancelled, asyncio.CancelledError)
