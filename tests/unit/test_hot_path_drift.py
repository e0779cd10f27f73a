"""The hot path's shortcuts answer as the code they replaced: each reference below is the
replaced code, kept here verbatim."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from runtimes.compiled.native import finite
from runtimes.protocol.rest_codec import _wants_binary, build_request
from runtimes.timings import PhaseClock


def wants_binary_by_getattr(request):
    default = bool(getattr(request.parameters, "binary_data_output", False))
    per_output = {}
    for output in request.outputs or []:
        flag = getattr(output.parameters, "binary_data", None) if output.parameters else None
        if flag is not None:
            per_output[output.name] = bool(flag)
    return default, per_output


flags = st.fixed_dictionaries(
    {},
    optional={
        "binary_data_output": st.booleans(),
        "binary_data": st.booleans(),
        "content_type": st.sampled_from(["np", "pd"]),
        "other": st.integers(),
    },
)
documents = st.fixed_dictionaries(
    {"inputs": st.just([{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}])},
    optional={
        "parameters": flags,
        "outputs": st.lists(
            st.fixed_dictionaries({"name": st.sampled_from(["predict", "predict_proba"])},
                                  optional={"parameters": flags}),  # fmt: skip
            max_size=3,
        ),
    },
)


@given(documents)
def test_binary_flags_read_from_the_extra_keys_as_getattr_read_them(document):
    request = build_request("m", document, b"", {})
    assert _wants_binary(request) == wants_binary_by_getattr(request)


floats = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12),
    elements=st.floats(allow_nan=True, allow_infinity=True),
)


@given(floats)
def test_finite_is_numpys_isfinite_all(array):
    assert finite(array) == bool(np.isfinite(array).all())


def test_laps_add_up_to_the_clocks_time():
    clock = PhaseClock()
    started = clock.last
    laps = [clock.lap() for _ in range(3)]
    assert all(lap >= 0 for lap in laps) and sum(laps) == clock.last - started
