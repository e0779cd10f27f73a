"""gRPC typed contents are read only from the field of the tensor's datatype (Triton's rule)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtimes.errors import InvalidInput
from runtimes.protocol.grpc.convert import CONTENTS_FIELD, to_inference_request
from runtimes.protocol.grpc.messages import message

DATATYPES = [*CONTENTS_FIELD, "FP16", "BF16", "FP65"]
VALUE_BY_FIELD = {
    "bool_contents": True, "int_contents": 5, "int64_contents": 5, "uint_contents": 5,
    "uint64_contents": 5, "fp32_contents": 5.5, "fp64_contents": 5.1, "bytes_contents": b"5",
}  # fmt: skip


def _request(datatype: str, fields: list[str]):
    request = message("ModelInferRequest")(model_name="m")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=[1])
    for field in fields:
        getattr(tensor.contents, field).append(VALUE_BY_FIELD[field])
    return request


@given(datatype=st.sampled_from(DATATYPES), field=st.sampled_from(sorted(VALUE_BY_FIELD)))
def test_only_the_datatypes_own_field_is_read(datatype: str, field: str):
    request = _request(datatype, [field])
    if CONTENTS_FIELD.get(datatype) == field:
        converted = to_inference_request(request, {})
        assert converted.inputs[0].data.root == [VALUE_BY_FIELD[field]]
        return
    with pytest.raises(InvalidInput) as caught:
        to_inference_request(request, {})
    message_text = str(caught.value)
    for word in ("'x'", datatype, field):
        assert word in message_text
    assert (CONTENTS_FIELD.get(datatype) or "raw_input_contents") in message_text


def test_two_populated_fields_are_refused_even_with_the_right_one():
    with pytest.raises(InvalidInput, match="fp64_contents, fp32_contents|fp32_contents, fp64"):
        to_inference_request(_request("FP64", ["fp64_contents", "fp32_contents"]), {})


def test_the_fp64_value_is_not_cast():
    converted = to_inference_request(_request("FP64", ["fp64_contents"]), {})
    assert converted.inputs[0].data.root == [5.1]
