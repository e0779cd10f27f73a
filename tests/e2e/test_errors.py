"""Bad requests get JSON errors with meaningful statuses, and matching gRPC codes.

One table, one row per bad input, each sent over REST (raw JSON via requests) and gRPC
(tritonclient.grpc with explicit tensor contents): the REST status, the gRPC code, and
words the message must hold. Rows that only one protocol can express follow the table.
"""

import gzip
import json
import select
import socket
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
WINE_ROW: dict[str, Any] = {
    "alcohol": 13.0,
    "malic_acid": 2.0,
    "flavanoids": 2.0,
    "proline": 700.0,
    "colour": "medium",
}


def _body(**tensor: Any) -> dict[str, Any]:
    base = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROW}
    return {"inputs": [{**base, **tensor}]}


def _wine(drop: str = "", **columns: dict[str, Any]) -> dict[str, Any]:
    inputs = []
    for name, value in WINE_ROW.items():
        if name == drop:
            continue
        datatype = "BYTES" if isinstance(value, str) else "FP64"
        tensor = {"name": name, "shape": [1], "datatype": datatype, "data": [value]}
        inputs.append({**tensor, **columns.pop(name, {})})
    inputs += [{"shape": [1], "datatype": "FP64", "data": [1.0], **c} for c in columns.values()]
    return {"inputs": inputs}


@dataclass
class Case:
    id: str
    path: str
    body: dict[str, Any]
    status: int
    code: str
    words: list[str]
    rest_words: list[str] = field(default_factory=list)
    grpc_words: list[str] = field(default_factory=list)


BAD = 400, "INVALID_ARGUMENT"
# fmt: off
CASES = [
    Case("unknown-model", "nope", _body(), 404, "NOT_FOUND", ["nope", "not found"]),
    Case("unknown-version", "iris/versions/9", _body(), 404, "NOT_FOUND", ["version '9'", "1, 2"]),
    Case("text-version", "iris/versions/abc", _body(), 404, "NOT_FOUND", ["version 'abc'"]),
    Case("too-few-features", "iris", _body(shape=[1, 3], data=IRIS_ROW[:3]), *BAD,
         ["input-0", "wrong shape", "[-1, 4]", "[1, 3]"]),
    Case("too-many-features", "iris", _body(shape=[1, 5], data=[*IRIS_ROW, 1.0]), *BAD,
         ["input-0", "[-1, 4]", "[1, 5]"]),
    Case("data-shorter-than-shape", "iris", _body(shape=[2, 4]), *BAD, ["8 values", "4 values"]),
    Case("data-longer-than-shape", "iris", _body(data=IRIS_ROW * 2), *BAD,
         ["4 values", "8 values"]),
    Case("huge-shape", "iris", _body(shape=[1_000_000_000, 4]), *BAD,
         ["4000000000 values", "4 values"]),
    Case("fp32-for-fp64", "iris", _body(datatype="FP32"), *BAD, ["wrong datatype", "FP64", "FP32"]),
    Case("int64-for-fp64", "iris", _body(datatype="INT64", data=[5, 3, 1, 0]), *BAD,
         ["FP64", "INT64"]),
    Case("bytes-datatype-for-numeric", "iris", _body(datatype="BYTES", data=["a"] * 4), *BAD,
         ["input-0", "FP64", "BYTES"]),
    # Over gRPC the strings travel in bytes_contents, which an FP64 tensor may not use.
    Case("strings-in-numeric-tensor", "iris", _body(data=["5.1", "3.5", "1.4", "0.2"]), *BAD,
         ["input-0", "FP64"], rest_words=["non-numeric"], grpc_words=["bytes_contents"]),
    Case("unknown-datatype", "iris", _body(datatype="FP65"), *BAD, ["datatype"],
         grpc_words=["FP65"]),
    Case("unknown-input", "iris", _body(name="x"), *BAD, ["'x'", "unknown", "input-0"]),
    Case("duplicate-input", "iris", {"inputs": _body()["inputs"] * 2}, *BAD,
         ["input-0", "duplicated"]),
    Case("no-inputs", "iris", {"inputs": []}, *BAD, ["no inputs"]),
    Case("rank-3-shape", "iris", _body(shape=[1, 4, 1]), *BAD, ["[-1, 4]", "[1, 4, 1]"]),
    Case("rank-1-shape", "iris", _body(shape=[4]), *BAD, ["[-1, 4]", "[4]"]),
    Case("negative-dimension", "iris", _body(shape=[-1, 4]), *BAD, ["wrong shape", "[-1, 4]"]),
    Case("empty-batch", "iris", _body(shape=[0, 4], data=[]), *BAD, ["empty batch", "0 rows"]),
    # JSON has no NaN or Infinity literal: over REST the body itself is malformed.
    Case("nan", "iris", _body(data=[float("nan"), 1, 2, 3]), *BAD, [],
         rest_words=["JSON"], grpc_words=["input-0", "NaN"]),
    Case("inf", "iris", _body(data=[float("inf"), 1, 2, 3]), *BAD, [],
         rest_words=["JSON"], grpc_words=["input-0", "Inf"]),
    Case("unknown-output", "iris", {**_body(), "outputs": [{"name": "nope"}]}, *BAD,
         ["nope", "predict_proba"]),
    Case("output-of-another-model", "diabetes",
         {**_body(shape=[1, 10], data=[0.0] * 10), "outputs": [{"name": "predict_proba"}]}, *BAD,
         ["diabetes", "predict_proba"]),
    Case("over-max-batch-size", "iris-limited", _body(shape=[3, 4], data=IRIS_ROW * 3), *BAD,
         ["iris-limited", "max_batch_size", "at most 2", "3 rows"]),
    Case("above-named-max", "iris-limited", _body(data=[9.0, 3.5, 1.4, 0.2]), *BAD,
         ["'sepal_length'", "[4, 8]", "got 9"]),
    Case("below-named-min", "iris-limited", _body(data=[3.0, 3.5, 1.4, 0.2]), *BAD,
         ["'sepal_length'", "[4, 8]", "got 3"]),
    Case("above-indexed-max", "iris-limited",
         _body(shape=[2, 4], data=[*IRIS_ROW, 5.1, 3.5, 1.4, 3.5]), *BAD,
         ["feature '3'", "<= 3", "3.5 in row 1"]),
    Case("column-above-max", "wine-strict", _wine(alcohol={"data": [20.0]}), *BAD,
         ["wine-strict", "'alcohol'", "declared range", "[10, 16]", "20"]),
    Case("category-from-encoder", "wine-strict", _wine(colour={"data": ["blue"]}), *BAD,
         ["'colour'", "categories", "'deep'", "'blue'"]),
    Case("declared-category", "wine-declared", _wine(colour={"data": ["deep"]}), *BAD,
         ["'colour'", "['medium', 'pale']", "'deep'"]),
    Case("missing-column", "wine-columns", _wine(drop="colour"), *BAD, ["'colour'", "missing"]),
    Case("unknown-column", "wine-columns", _wine(color={"name": "color"}), *BAD,
         ["'color'", "unknown", "colour"]),
    Case("number-for-string-column", "wine-columns",
         _wine(colour={"datatype": "FP64", "data": [1.0]}), *BAD, ["'colour'", "BYTES", "FP64"]),
    Case("string-for-number-column", "wine-columns",
         _wine(alcohol={"datatype": "BYTES", "data": ["13"]}), *BAD,
         ["'alcohol'", "FP64", "BYTES"]),
    Case("columns-of-different-lengths", "wine-columns",
         _wine(proline={"shape": [2], "data": [700.0, 800.0]}), *BAD, ["batch size"]),
    Case("column-of-wrong-rank", "wine-columns",
         _wine(proline={"shape": [1, 2], "data": [700.0, 800.0]}), *BAD,
         ["'proline'", "[-1]", "[1, 2]"]),
    Case("content-type-not-a-string", "iris", {**_body(), "parameters": {"content_type": 5}},
         *BAD, ["content_type", "string"]),
]
# fmt: on

assert len(CASES) >= 30


_CONTENTS = {
    "FP64": "fp64_contents",
    "FP32": "fp32_contents",
    "INT64": "int64_contents",
    "INT32": "int_contents",
    "BOOL": "bool_contents",
    "BYTES": "bytes_contents",
}


def _grpc_request(body: dict[str, Any]) -> tuple[list[Any], list[Any] | None]:
    """tritonclient tensors with explicit contents, so any datatype/data mix can be sent."""
    tensors = []
    for tensor in body["inputs"]:
        infer_input = grpcclient.InferInput(tensor["name"], tensor["shape"], tensor["datatype"])
        infer_input._raw_content = None
        values = np.asarray(tensor["data"], dtype=object).reshape(-1).tolist()
        contents = infer_input._get_tensor().contents
        if values and all(isinstance(v, str) for v in values):
            contents.bytes_contents.extend(v.encode() for v in values)
        else:
            getattr(contents, _CONTENTS.get(tensor["datatype"], "fp64_contents")).extend(values)
        tensors.append(infer_input)
    outputs = [grpcclient.InferRequestedOutput(o["name"]) for o in body.get("outputs", [])]
    return tensors, outputs or None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_request_over_rest(server, case):
    response = requests.post(
        f"{server.base}/v2/models/{case.path}/infer",
        data=json.dumps(case.body),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == case.status, response.text
    message = response.json()["error"]
    for word in case.words + case.rest_words:
        assert word in message


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_request_over_grpc(server, case):
    model, _, version = case.path.partition("/versions/")
    inputs, outputs = _grpc_request(case.body)
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    with pytest.raises(InferenceServerException) as caught:
        client.infer(
            model,
            inputs,
            model_version=version,
            outputs=outputs,
            parameters=case.body.get("parameters"),
        )
    assert caught.value.status() == f"StatusCode.{case.code}", caught.value.message()
    for word in case.words + case.grpc_words:
        assert word in caught.value.message()


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"{not json", ["JSON"]),
        (b"[1, 2]", ["invalid inference request"]),
        (b'{"inputs": 3}', ["inputs", "list"]),
        (b'{"inputs": {"name": "input-0"}}', ["inputs", "list"]),
        (b"{}", ["inputs"]),
        (b'{"inputs": [], "parameters": 5}', ["parameters", "must be an object"]),
        (
            b'{"inputs": [{"name": "input-0", "shape": "1,4", "datatype": "FP64", "data": []}]}',
            ["shape", "list"],
        ),
        (
            b'{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1],'
            b' "parameters": {"content_type": 1}}]}',
            ["content_type", "string"],
        ),
        (json.dumps(_body(data=[[5.1, 3.5], [1.4]])).encode(), ["ragged"]),
        (json.dumps(_body(data=[5.1, 3.5, 1.4, True])).encode(), ["non-numeric", "booleans"]),
        (json.dumps(_body(data=[5.1, 3.5, 1.4, None])).encode(), ["non-numeric", "nulls"]),
        (json.dumps(_body(data={"a": 1})).encode(), ["non-numeric", "objects"]),
    ],
)
def test_malformed_bodies_are_400_json(server, raw, words):
    response = requests.post(
        f"{server.base}/v2/models/iris/infer",
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    for word in words:
        assert word in response.json()["error"]


def _raw_input(name: str, shape: list[int], datatype: str, raw: bytes) -> Any:
    infer_input = grpcclient.InferInput(name, shape, datatype)
    infer_input._raw_content = raw
    return infer_input


IRIS_RAW = np.array([IRIS_ROW]).tobytes()


@pytest.mark.parametrize(
    ("inputs", "words"),
    [
        ([_raw_input("input-0", [1, 4], "FP64", IRIS_RAW[:24])], ["32 bytes", "24 bytes"]),
        ([_raw_input("input-0", [1, 4], "FP64", IRIS_RAW + b"\0")], ["32 bytes", "33 bytes"]),
        ([_raw_input("input-0", [2, 4], "FP64", IRIS_RAW)], ["64 bytes", "FP64 [2, 4]"]),
        ([_raw_input("input-0", [1, 4], "FP32", IRIS_RAW)], ["16 bytes", "32 bytes"]),
        ([_raw_input("input-0", [-1, 4], "FP64", IRIS_RAW)], ["negative", "[-1, 4]"]),
        ([_raw_input("input-0", [1, 4], "FP65", IRIS_RAW)], ["unknown datatype", "FP65"]),
        ([_raw_input("input-0", [1, 4], "BYTES", b"\x09\0\0\0ab")], ["malformed", "BYTES"]),
        (
            [_raw_input("input-0", [1, 4], "BYTES", b"\x01\0\0\0a" * 3)],
            ["4 length-prefixed strings", "3 strings"],
        ),
    ],
    ids=[
        "short",
        "long",
        "shape-says-more",
        "fp32-size",
        "negative",
        "unknown",
        "bytes-overrun",
        "bytes-count",
    ],
)
def test_bad_raw_contents_are_invalid_argument(server, inputs, words):
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("iris", inputs)
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT", caught.value.message()
    assert "input-0" in caught.value.message()
    for word in words:
        assert word in caught.value.message()


def test_raw_contents_decode_like_typed_contents(server, estimators):
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    result = client.infer("iris", [_raw_input("input-0", [1, 4], "FP64", IRIS_RAW)])
    expected = estimators[("iris", "2")].predict(np.array([IRIS_ROW]))
    np.testing.assert_array_equal(result.as_numpy("predict").reshape(-1), expected)


def test_body_without_content_type_is_read_as_json(server, estimators):
    raw = json.dumps(_body()).encode()
    response = requests.post(f"{server.base}/v2/models/iris/infer", data=raw)
    assert response.status_code == 200, response.text
    expected = estimators[("iris", "2")].predict(np.array([IRIS_ROW]))
    assert response.json()["outputs"][0]["data"] == expected.tolist()


def test_values_inside_declared_constraints_are_served(server, estimators):
    rows = np.array([IRIS_ROW, [6.7, 3.0, 5.2, 2.3]])
    body = _body(shape=[2, 4], data=rows.tolist())
    response = requests.post(f"{server.base}/v2/models/iris-limited/infer", json=body)
    assert response.status_code == 200, response.text
    expected = estimators[("iris", "1")].predict(rows)
    assert response.json()["outputs"][0]["data"] == expected.tolist()


def test_unknown_path_is_json_404(server):
    response = requests.get(f"{server.base}/v2/nothing/here")
    assert response.status_code == 404
    assert "error" in response.json()


# HTTP-level refusals, sent over raw sockets: no client library sends these on purpose.


def _raw_exchange(server: Any, chunks: list[bytes]) -> tuple[int, dict[str, str], bytes]:
    """Send ``chunks`` one by one until the server answers (a refusal may come before
    the last), then read the whole response: status, headers, body."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([sock], [], [], 0.01)[0]:
                break
        received = b""
        while b"\r\n\r\n" not in received:
            part = sock.recv(65536)
            assert part, f"closed without a response: {received!r}"
            received += part
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }
        while len(body) < int(headers["content-length"]):
            part = sock.recv(65536)
            if not part:
                break
            body += part
        return int(lines[0].split(" ")[1]), headers, body


def _infer_head(extra: bytes) -> bytes:
    return b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"


BODY = json.dumps(_body()).encode()


@pytest.mark.parametrize(
    ("request_bytes", "words"),
    [
        (_infer_head(b"Content-Length: abc\r\n"), ["Content-Length"]),
        (_infer_head(b"Content-Length: -5\r\n"), ["Content-Length"]),
        (
            _infer_head(b"Content-Length: %d\r\nContent-Length: %d\r\n" % (len(BODY), len(BODY)))
            + BODY,
            ["Duplicate Content-Length"],
        ),
        (
            _infer_head(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n") + b"0\r\n\r\n",
            ["Transfer-Encoding", "Content-Length"],
        ),
        (_infer_head(b"X-Trace: a\x00b\r\nContent-Length: 0\r\n"), ["header value"]),
        (_infer_head(b"Transfer-Encoding: chunked\r\n") + b"zz\r\n", ["chunk size"]),
    ],
    ids=["cl-text", "cl-negative", "cl-twice", "cl-and-te", "nul-in-header", "bad-chunk"],
)
def test_malformed_http_framing_is_400_json(server, request_bytes, words):
    status, headers, body = _raw_exchange(server, [request_bytes])
    assert status == 400, body
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    message = json.loads(body)["error"]
    assert "malformed HTTP request" in message
    for word in words:
        assert word in message


def test_headers_above_max_header_bytes_are_431_json(server):
    many = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 1000) for i in range(70))
    status, headers, body = _raw_exchange(server, [_infer_head(many)])
    assert status == 431, body
    assert headers["connection"] == "close"
    assert "max_header_bytes" in json.loads(body)["error"]


def test_one_growing_header_line_is_cut_off_at_the_limit(server):
    """The attack from issue 14: one header line that never ends. It used to be buffered
    to 70-80 MB; now the answer comes once the head passes 64 KiB."""
    chunks = [b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Endless: "]
    chunks += [b"a" * 4096] * 4096  # 16 MiB on offer; the server must stop long before
    status, _, body = _raw_exchange(server, chunks)
    assert status == 431, body
    message = json.loads(body)["error"]
    counted = int(message.split("at least ")[1].split(" bytes")[0])
    assert 64 * 1024 < counted < 64 * 1024 + 256 * 1024, message


def test_a_url_above_max_url_bytes_is_414_json(server):
    long_name = b"m" * (20 * 1024)
    request_bytes = b"GET /v2/models/" + long_name + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    status, headers, body = _raw_exchange(server, [request_bytes])
    assert status == 414, body
    assert "max_url_bytes" in json.loads(body)["error"]


def test_a_request_under_the_limits_is_served_on_the_same_kind_of_socket(server, estimators):
    long_header = b"X-Filler: " + b"v" * 30_000 + b"\r\n"
    head = _infer_head(long_header + b"Content-Length: %d\r\n" % len(BODY))
    status, _, body = _raw_exchange(server, [head + BODY])
    assert status == 200, body
    expected = estimators[("iris", "2")].predict(np.array([IRIS_ROW]))
    assert json.loads(body)["outputs"][0]["data"] == expected.tolist()


# Strict REST bodies (issue 14.11).


def _binary_request(raw: bytes) -> tuple[bytes, dict[str, str]]:
    tensor = {"name": "input-0", "shape": [1, 4], "datatype": "FP64"}
    header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": 32}}]})
    return header.encode() + raw, {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }


def test_bytes_after_the_binary_inputs_are_400(server):
    body, headers = _binary_request(IRIS_RAW + b"\0" * 8)
    response = requests.post(f"{server.base}/v2/models/iris/infer", data=body, headers=headers)
    assert response.status_code == 400, response.text
    assert "8 bytes of binary data follow the last binary input" in response.json()["error"]
    body, headers = _binary_request(IRIS_RAW)
    exact = requests.post(f"{server.base}/v2/models/iris/infer", data=body, headers=headers)
    assert exact.status_code == 200, exact.text


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ({**_body(), "parameters": {"binary_data_output": "false"}}, "'binary_data_output'"),
        ({**_body(), "outputs": [{"name": "predict", "parameters": {"binary_data": "false"}}]},
         "'binary_data'"),
    ],
    ids=["binary_data_output", "binary_data"],
)  # fmt: skip
def test_string_booleans_are_400_naming_the_parameter(server, document, where):
    response = requests.post(f"{server.base}/v2/models/iris/infer", json=document)
    assert response.status_code == 400, response.text
    assert where in response.json()["error"] and "JSON boolean" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (gzip.compress(BODY) + b"trailing", "8 bytes follow the end of the gzip stream"),
        (gzip.compress(BODY) + gzip.compress(BODY), "follow the end of the gzip stream"),
        (gzip.compress(BODY)[:-6], "truncated"),
    ],
    ids=["trailing-bytes", "second-member", "truncated"],
)
def test_a_gzip_body_must_be_exactly_one_member(server, body, words):
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    response = requests.post(f"{server.base}/v2/models/iris/infer", data=body, headers=headers)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]


# Non-finite outputs (issue 14.5): the model predicts +Inf, -Inf and NaN.

NON_FINITE_ROWS = np.array([[1.0, 0, 0, 0], [-1.0, 0, 0, 0], [0.0, 0, 0, 0]])


def test_a_non_finite_output_over_json_is_500_naming_it(server):
    body = _body(shape=[3, 4], data=NON_FINITE_ROWS.tolist())
    response = requests.post(f"{server.base}/v2/models/non-finite/infer", json=body)
    assert response.status_code == 500, response.text
    message = response.json()["error"]
    assert "output 'predict' holds NaN/Inf" in message, message
    assert "binary_data_output" in message and "gRPC" in message


def test_non_finite_outputs_travel_unchanged_in_binary_and_grpc(server, estimators):
    with np.errstate(invalid="ignore"):  # 0 x Inf, on purpose
        expected = estimators[("non-finite", "1")].predict(NON_FINITE_ROWS)
    assert np.isposinf(expected[0]) and np.isneginf(expected[1]) and np.isnan(expected[2])
    rest = httpclient.InferenceServerClient(url=server.http_url)
    tensor = httpclient.InferInput("input-0", [3, 4], "FP64")
    tensor.set_data_from_numpy(NON_FINITE_ROWS)
    wanted = [httpclient.InferRequestedOutput("predict", binary_data=True)]
    np.testing.assert_array_equal(
        rest.infer("non-finite", [tensor], outputs=wanted).as_numpy("predict"), expected
    )
    grpc_client = grpcclient.InferenceServerClient(url=server.grpc_url)
    grpc_tensor = grpcclient.InferInput("input-0", [3, 4], "FP64")
    grpc_tensor.set_data_from_numpy(NON_FINITE_ROWS)
    np.testing.assert_array_equal(
        grpc_client.infer("non-finite", [grpc_tensor]).as_numpy("predict"), expected
    )
