"""``construct`` builds what ``model_construct`` builds, for every class the hot path builds."""

import numpy as np
import orjson
from hypothesis import given
from hypothesis import strategies as st
from mlserver.types import (
    InferenceRequest,
    InferenceResponse,
    Parameters,
    RequestInput,
    RequestOutput,
    ResponseOutput,
    TensorData,
)

from runtimes.construct import construct, empty_parameters
from runtimes.protocol.rest_codec import parse_request

names = st.text(min_size=1, max_size=8)
shapes = st.lists(st.integers(min_value=-1, max_value=5), max_size=3)
values = st.lists(st.floats(allow_nan=False) | st.integers(), max_size=6)
maybe_parameters = st.none() | st.builds(lambda: Parameters(content_type="np"))


def same(built, reference) -> None:
    assert type(built) is type(reference)
    assert built == reference
    assert built.model_fields_set == reference.model_fields_set
    assert built.__pydantic_extra__ == reference.__pydantic_extra__
    assert built.__pydantic_private__ == reference.__pydantic_private__
    assert built.model_dump() == reference.model_dump()  # MLServer's: exclude_unset
    assert built.model_dump_json() == reference.model_dump_json()


def test_the_classes_have_no_extra_keys_and_no_private_attributes():
    for cls in (InferenceRequest, RequestInput, RequestOutput, TensorData,
                InferenceResponse, ResponseOutput):  # fmt: skip
        assert cls.model_config.get("extra") in (None, "ignore"), cls
        assert not cls.__private_attributes__, cls


@given(names, shapes, st.sampled_from(["FP64", "INT64", "BYTES"]), maybe_parameters, values)
def test_tensors(name, shape, datatype, parameters, data):
    fields = {"name": name, "shape": shape, "datatype": datatype, "parameters": parameters}
    for cls in (RequestInput, ResponseOutput):
        same(
            construct(cls, {**fields, "data": construct(TensorData, {"root": data})}),
            cls.model_construct(**fields, data=TensorData.model_construct(root=data)),
        )
    same(
        construct(RequestOutput, {"name": name, "parameters": parameters}),
        RequestOutput.model_construct(name=name, parameters=parameters),
    )


@given(st.none() | names, maybe_parameters, st.none() | st.just([]))
def test_requests_and_responses(request_id, parameters, outputs):
    tensor = RequestInput.model_construct(
        name="x", shape=[1], datatype="FP64", parameters=None, data=TensorData(root=[1.0])
    )
    fields = {"id": request_id, "parameters": parameters, "inputs": [tensor], "outputs": outputs}
    same(construct(InferenceRequest, fields), InferenceRequest.model_construct(**fields))
    answer = {"model_name": "m", "model_version": "2", "id": request_id,
              "parameters": parameters, "outputs": []}  # fmt: skip
    same(construct(InferenceResponse, answer), InferenceResponse.model_construct(**answer))


def test_empty_parameters_are_parameters_and_take_headers_alike():
    built, reference = empty_parameters(), Parameters()
    same(built, reference)
    built.headers = reference.headers = {"x-request-id": "7"}
    same(built, reference)
    built.content_type = reference.content_type = "np"
    same(built, reference)


def test_a_parsed_request_dumps_as_the_same_request_validated():
    body = {"id": "r1", "inputs": [{"name": "input-0", "shape": [2, 2], "datatype": "FP64",
            "data": [1.0, 2.0, 3.0, 4.0]}], "outputs": [{"name": "predict"}]}  # fmt: skip
    parsed = parse_request("m", orjson.dumps(body), None, {"h": "v"})
    validated = InferenceRequest.model_validate({**body, "parameters": {"headers": {"h": "v"}}})
    assert parsed.model_dump() == validated.model_dump()
    assert np.asarray(parsed.inputs[0].data.root).tolist() == [1.0, 2.0, 3.0, 4.0]
