"""The gateway against the real tritonclient, over HTTP and gRPC.

One gateway serves this module (conftest's `gateway` fixture) from a copy of
models/: at start each model's newest version is live in its blue slot
(boosted 3, linear 1, mlp 1). Every inference is checked against the
version's golden.json: labels exactly, probabilities within 1e-5.

Tests that change the routing (unload/load, the green slot) put it back as
they found it, so the tests hold in any order.
"""

from __future__ import annotations

import tomllib

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import MODELS, load_golden, repository_versions

PROBA_ATOL = 1e-5
VERSIONS = repository_versions()
MODEL_NAMES = sorted(VERSIONS)
# At start the newest version of each model is live.
LIVE = {m: max(v) for m, v in VERSIONS.items()}


def test_repository_is_the_one_the_tests_expect():
    assert LIVE == {"boosted": 3, "dropout": 3, "linear": 1, "mlp": 1}
    assert VERSIONS["boosted"] == [1, 2, 3]


def manifest(model: str, version: int) -> dict:
    return tomllib.loads((MODELS / model / str(version) / "model.toml").read_text())


# --- clients ---------------------------------------------------------------


@pytest.fixture(scope="module")
def http(gateway):
    client = httpclient.InferenceServerClient(gateway.http_addr, network_timeout=30)
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc_client(gateway):
    client = grpcclient.InferenceServerClient(gateway.grpc_addr)
    yield client
    client.close()


@pytest.fixture(params=["http", "grpc"])
def client(request, http, grpc_client):
    return {"http": http, "grpc": grpc_client}[request.param]


def http_input(x: np.ndarray, name="input", datatype="FP32", binary_data=True):
    i = httpclient.InferInput(name, list(x.shape), datatype)
    i.set_data_from_numpy(x, binary_data=binary_data)
    return i


def grpc_input(x: np.ndarray, name="input", datatype="FP32"):
    i = grpcclient.InferInput(name, list(x.shape), datatype)
    i.set_data_from_numpy(x)
    return i


def infer_any(protocol, http, grpc_client, model, x, **kw):
    if protocol == "http":
        return http.infer(model, [http_input(x)], **kw)
    return grpc_client.infer(model, [grpc_input(x)], **kw)


def response_version(protocol, result) -> str:
    if protocol == "http":
        return result.get_response()["model_version"]
    return result.get_response().model_version


def assert_golden(result, golden, outputs=("label", "probabilities")):
    if "label" in outputs:
        label = result.as_numpy("label")
        assert label is not None, "no label output"
        assert label.dtype == np.int64
        assert label.shape == golden.label.shape
        np.testing.assert_array_equal(label, golden.label)
    if "probabilities" in outputs:
        proba = result.as_numpy("probabilities")
        assert proba is not None, "no probabilities output"
        assert proba.dtype == np.float32
        assert proba.shape == golden.probabilities.shape
        np.testing.assert_allclose(proba, golden.probabilities, rtol=0, atol=PROBA_ATOL)


def assert_serving(http, model="boosted"):
    """The gateway still answers correctly."""
    g = load_golden(model, LIVE[model])
    result = http.infer(model, [http_input(g.input)])
    assert_golden(result, g)


# --- health and metadata ---------------------------------------------------


def test_server_live_and_ready(client):
    assert client.is_server_live() is True
    assert client.is_server_ready() is True


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_model_ready(client, model):
    assert client.is_model_ready(model) is True
    assert client.is_model_ready(model, str(LIVE[model])) is True


def test_model_not_ready(client):
    assert client.is_model_ready("no-such-model") is False
    # boosted 2 is in the repository but not loaded; 9 does not exist.
    assert client.is_model_ready("boosted", "2") is False
    assert client.is_model_ready("boosted", "9") is False


def test_server_metadata(http, grpc_client):
    h = http.get_server_metadata()
    g = grpc_client.get_server_metadata()
    assert h["name"] == "switchyard"
    assert g.name == "switchyard"
    assert h["version"] and h["version"] == g.version
    assert "binary_tensor_data" in h["extensions"]
    assert "model_repository" in h["extensions"]


def expected_tensors(specs):
    return [(s["name"], s["datatype"], list(s["shape"])) for s in specs]


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_model_metadata_http(http, model):
    m = manifest(model, LIVE[model])
    for md in (http.get_model_metadata(model), http.get_model_metadata(model, str(LIVE[model]))):
        assert md["name"] == model
        assert md["versions"] == [str(LIVE[model])]
        assert md["platform"] == "onnx"
        got_in = [(t["name"], t["datatype"], t["shape"]) for t in md["inputs"]]
        got_out = [(t["name"], t["datatype"], t["shape"]) for t in md["outputs"]]
        assert got_in == expected_tensors(m["inputs"])
        assert got_out == expected_tensors(m["outputs"])
        # What the brief of every example model says, independent of the manifest.
        assert got_in == [("input", "FP32", [-1, 12 if model == "dropout" else 20])]
        assert got_out == [("label", "INT64", [-1]), ("probabilities", "FP32", [-1, 2])]


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_model_metadata_grpc(grpc_client, model):
    m = manifest(model, LIVE[model])
    for md in (
        grpc_client.get_model_metadata(model),
        grpc_client.get_model_metadata(model, str(LIVE[model])),
    ):
        assert md.name == model
        assert list(md.versions) == [str(LIVE[model])]
        assert md.platform == "onnx"
        got_in = [(t.name, t.datatype, list(t.shape)) for t in md.inputs]
        got_out = [(t.name, t.datatype, list(t.shape)) for t in md.outputs]
        assert got_in == expected_tensors(m["inputs"])
        assert got_out == expected_tensors(m["outputs"])
        assert got_in == [("input", "FP32", [-1, 12 if model == "dropout" else 20])]


def test_metadata_of_unknown_model_or_version(client):
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("no-such-model")
    assert "no-such-model" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("boosted", "9")
    assert "9" in e.value.message() and "boosted" in e.value.message()


# --- inference: HTTP -------------------------------------------------------

HTTP_OUTPUT_CASES = {
    "all-implicit": None,
    "both": ("label", "probabilities"),
    "label-only": ("label",),
    "probabilities-only": ("probabilities",),
}


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("outputs", list(HTTP_OUTPUT_CASES), ids=list(HTTP_OUTPUT_CASES))
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_infer_http_golden(http, model, outputs, binary):
    g = load_golden(model, LIVE[model])
    names = HTTP_OUTPUT_CASES[outputs]
    requested = (
        None if names is None
        else [httpclient.InferRequestedOutput(n, binary_data=binary) for n in names]
    )
    request_id = f"req-{model}-{outputs}-{binary}"
    result = http.infer(
        model,
        [http_input(g.input, binary_data=binary)],
        outputs=requested,
        request_id=request_id,
    )
    body = result.get_response()
    assert body["model_name"] == model
    assert body["model_version"] == str(LIVE[model])
    assert body["id"] == request_id
    want = names or ("label", "probabilities")
    assert [o["name"] for o in body["outputs"]] == list(want)
    for o in body["outputs"]:
        shape = [32] if o["name"] == "label" else [32, 2]
        assert o["shape"] == shape
        assert o["datatype"] == ("INT64" if o["name"] == "label" else "FP32")
        # Without requested outputs tritonclient asks for binary data for all.
        as_binary = binary or names is None
        if as_binary:
            assert "data" not in o
            size = 8 * 32 if o["name"] == "label" else 4 * 64
            assert o["parameters"]["binary_data_size"] == size
        else:
            assert "binary_data_size" not in o.get("parameters", {})
            assert len(o["data"]) == (32 if o["name"] == "label" else 64)
    assert_golden(result, g, want)
    for other in {"label", "probabilities"} - set(want):
        assert result.as_numpy(other) is None


def test_infer_http_mixed_binary_and_json_outputs(http):
    g = load_golden("boosted", LIVE["boosted"])
    result = http.infer(
        "boosted",
        [http_input(g.input)],
        outputs=[
            httpclient.InferRequestedOutput("probabilities", binary_data=True),
            httpclient.InferRequestedOutput("label", binary_data=False),
        ],
    )
    body = result.get_response()
    assert [o["name"] for o in body["outputs"]] == ["probabilities", "label"]
    assert "data" in body["outputs"][1] and "data" not in body["outputs"][0]
    assert_golden(result, g)


# --- inference: gRPC -------------------------------------------------------


@pytest.mark.parametrize("outputs", [None, ("label", "probabilities"), ("probabilities",)],
                         ids=["all", "both", "probabilities-only"])
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_infer_grpc_golden(grpc_client, model, outputs):
    g = load_golden(model, LIVE[model])
    requested = None if outputs is None else [grpcclient.InferRequestedOutput(n) for n in outputs]
    request_id = f"grpc-{model}-{outputs}"
    result = grpc_client.infer(
        model, [grpc_input(g.input)], outputs=requested, request_id=request_id
    )
    response = result.get_response()
    assert response.model_name == model
    assert response.model_version == str(LIVE[model])
    assert response.id == request_id
    want = outputs or ("label", "probabilities")
    assert [o.name for o in response.outputs] == list(want)
    # Outputs come back as raw_output_contents, one entry per output.
    assert len(response.raw_output_contents) == len(want)
    assert_golden(result, g, want)


def test_infer_grpc_one_row_at_a_time(grpc_client):
    g = load_golden("mlp", LIVE["mlp"])
    for row in range(4):
        result = grpc_client.infer("mlp", [grpc_input(g.input[row:row + 1])])
        assert result.as_numpy("label").tolist() == [int(g.label[row])]
        np.testing.assert_allclose(
            result.as_numpy("probabilities")[0], g.probabilities[row], rtol=0, atol=PROBA_ATOL
        )


# --- version pinning -------------------------------------------------------


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_version_pinning(http, grpc_client, protocol):
    g = load_golden("boosted", 3)
    result = infer_any(protocol, http, grpc_client, "boosted", g.input, model_version="3")
    assert response_version(protocol, result) == "3"
    assert_golden(result, g)

    with pytest.raises(InferenceServerException) as e:
        infer_any(protocol, http, grpc_client, "boosted", g.input, model_version="9")
    expected_status = "404" if protocol == "http" else "StatusCode.NOT_FOUND"
    assert e.value.status() == expected_status
    message = e.value.message()
    assert "version 9" in message and "boosted" in message
    assert_serving(http)


# --- repository extension (HTTP) ------------------------------------------


def test_repository_index_lists_every_version(http):
    index = http.get_model_repository_index()
    got = {(e["name"], e["version"]): e["state"] for e in index}
    expected_keys = {(m, str(v)) for m, vs in VERSIONS.items() for v in vs}
    assert set(got) == expected_keys
    assert len(index) == len(expected_keys)
    for (m, v), state in got.items():
        if int(v) == LIVE[m]:
            assert state == "READY", (m, v, state)
        else:
            assert state != "READY", (m, v, state)
    not_loaded = [e for e in index if e["state"] != "READY"]
    assert all(e.get("reason") for e in not_loaded), not_loaded


def test_repository_load_of_a_served_model_keeps_it_serving(http, grpc_client):
    http.load_model("boosted")
    assert http.is_model_ready("boosted") is True
    g = load_golden("boosted", LIVE["boosted"])
    result = http.infer("boosted", [http_input(g.input)])
    assert result.get_response()["model_version"] == str(LIVE["boosted"])
    assert_golden(result, g)
    result = grpc_client.infer("boosted", [grpc_input(g.input)])
    assert result.get_response().model_version == str(LIVE["boosted"])


def test_repository_unload_and_load(http, grpc_client):
    g = load_golden("mlp", LIVE["mlp"])
    try:
        http.unload_model("mlp")
        assert http.is_model_ready("mlp") is False
        assert grpc_client.is_model_ready("mlp") is False

        with pytest.raises(InferenceServerException) as e:
            http.infer("mlp", [http_input(g.input)])
        assert e.value.status() == "404"
        assert "mlp" in e.value.message() and "not loaded" in e.value.message()

        with pytest.raises(InferenceServerException) as e:
            grpc_client.infer("mlp", [grpc_input(g.input)])
        assert e.value.status() == "StatusCode.NOT_FOUND"
        assert "mlp" in e.value.message()

        index = {(x["name"], x["version"]): x for x in http.get_model_repository_index()}
        assert index[("mlp", "1")]["state"] == "UNAVAILABLE"
        # Other models are untouched.
        assert index[("linear", "1")]["state"] == "READY"
        assert_serving(http, "linear")
    finally:
        http.load_model("mlp")

    assert http.is_model_ready("mlp") is True
    assert grpc_client.is_model_ready("mlp") is True
    result = http.infer("mlp", [http_input(g.input)])
    assert result.get_response()["model_version"] == str(LIVE["mlp"])
    assert_golden(result, g)
    result = grpc_client.infer("mlp", [grpc_input(g.input)])
    assert_golden(result, g)


def test_repository_load_of_an_unknown_model_fails(http):
    with pytest.raises(InferenceServerException) as e:
        http.load_model("no-such-model")
    assert e.value.status() == "404"
    assert "no-such-model" in e.value.message()


def test_grpc_advertises_only_what_it_implements(grpc_client, http):
    # The repository extension is served over HTTP only; gRPC must not claim it.
    assert "model_repository" not in list(grpc_client.get_server_metadata().extensions)
    assert "model_repository" in http.get_server_metadata()["extensions"]
    with pytest.raises(InferenceServerException) as err:
        grpc_client.get_model_repository_index()
    assert "UNIMPLEMENTED" in str(err.value)


# --- bad input through the clients ----------------------------------------

BAD_INPUTS = {
    # case: (model, input name, datatype, array, http status, grpc status, words in message)
    "fp64": ("boosted", "input", "FP64", np.zeros((1, 20), np.float64), "400",
             "StatusCode.INVALID_ARGUMENT", ("input", "FP64", "FP32")),
    "shape": ("boosted", "input", "FP32", np.zeros((1, 19), np.float32), "400",
              "StatusCode.INVALID_ARGUMENT", ("input", "[1, 19]")),
    "unknown-input": ("boosted", "features", "FP32", np.zeros((1, 20), np.float32), "400",
                      "StatusCode.INVALID_ARGUMENT", ("features", "boosted")),
    "unknown-model": ("no-such-model", "input", "FP32", np.zeros((1, 20), np.float32), "404",
                      "StatusCode.NOT_FOUND", ("no-such-model",)),
}


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_http(http, case, binary):
    model, name, datatype, x, status, _, words = BAD_INPUTS[case]
    with pytest.raises(InferenceServerException) as e:
        http.infer(model, [http_input(x, name=name, datatype=datatype, binary_data=binary)])
    assert e.value.status() == status
    for w in words:
        assert w in e.value.message(), (w, e.value.message())
    assert_serving(http)


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_grpc(grpc_client, http, case):
    model, name, datatype, x, _, status, words = BAD_INPUTS[case]
    with pytest.raises(InferenceServerException) as e:
        grpc_client.infer(model, [grpc_input(x, name=name, datatype=datatype)])
    assert e.value.status() == status
    for w in words:
        assert w in e.value.message(), (w, e.value.message())
    g = load_golden("boosted", LIVE["boosted"])
    assert_golden(grpc_client.infer("boosted", [grpc_input(g.input)]), g)


def test_unknown_requested_output(client, http):
    x = np.zeros((1, 20), np.float32)
    if client is http:
        kwargs = dict(outputs=[httpclient.InferRequestedOutput("logits")])
        inputs = [http_input(x)]
    else:
        kwargs = dict(outputs=[grpcclient.InferRequestedOutput("logits")])
        inputs = [grpc_input(x)]
    with pytest.raises(InferenceServerException) as e:
        client.infer("boosted", inputs, **kwargs)
    assert "logits" in e.value.message()
    assert_serving(http)


@pytest.mark.parametrize("protocol,algorithm", [("http", "gzip"), ("http", "deflate"), ("grpc", "gzip")])
def test_compressed_request(http, grpc_client, protocol, algorithm):
    g = load_golden("boosted", LIVE["boosted"])
    if protocol == "http":
        result = http.infer(
            "boosted", [http_input(g.input)], request_compression_algorithm=algorithm
        )
    else:
        result = grpc_client.infer(
            "boosted", [grpc_input(g.input)], compression_algorithm=algorithm
        )
    assert_golden(result, g)


# --- gRPC health -----------------------------------------------------------


def _health_request(service: str) -> bytes:
    # grpc.health.v1.HealthCheckRequest { string service = 1; }
    raw = service.encode()
    assert len(raw) < 128
    return b"" if not raw else b"\x0a" + bytes([len(raw)]) + raw


def _health_status(response: bytes) -> int:
    # grpc.health.v1.HealthCheckResponse { ServingStatus status = 1; }
    # The default (UNKNOWN = 0) is not written at all.
    if response == b"":
        return 0
    assert response[0] == 0x08, response
    assert len(response) == 2, response
    return response[1]


SERVING = 1


@pytest.fixture(scope="module")
def health_check(gateway):
    channel = grpc.insecure_channel(gateway.grpc_addr)
    call = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    yield call
    channel.close()


def test_grpc_health_serving(health_check):
    assert _health_status(health_check(_health_request(""), timeout=5)) == SERVING
    assert (
        _health_status(health_check(_health_request("inference.GRPCInferenceService"), timeout=5))
        == SERVING
    )


def test_grpc_health_unknown_service(health_check):
    with pytest.raises(grpc.RpcError) as e:
        health_check(_health_request("no.such.Service"), timeout=5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("method", [
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/inference.GRPCInferenceService/NoSuchMethod",
    "/grpc.health.v1.Health/NoSuchMethod",
])
def test_grpc_unknown_method_is_unimplemented(gateway, method):
    channel = grpc.insecure_channel(gateway.grpc_addr)
    try:
        call = channel.unary_unary(method, request_serializer=lambda b: b,
                                   response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as e:
            call(b"", timeout=5)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        channel.close()


# --- slot pinning with x-slot ---------------------------------------------


def test_slot_header_pins_green(gateway, http, grpc_client):
    admin = gateway.admin_url
    g2 = load_golden("boosted", 2)
    g3 = load_golden("boosted", 3)

    def green():
        # A new dict each call: tritonclient.http adds its own headers
        # (Inference-Header-Content-Length, an int) to the dict it is given.
        return {"x-slot": "green"}

    with pytest.raises(InferenceServerException) as e:
        http.infer("boosted", [http_input(g2.input)], headers=green())
    assert e.value.status() == "404"
    assert "green" in e.value.message() and "empty" in e.value.message()
    assert "boosted" in e.value.message()

    with pytest.raises(InferenceServerException) as e:
        grpc_client.infer("boosted", [grpc_input(g2.input)], headers=green())
    assert e.value.status() == "StatusCode.NOT_FOUND"
    assert "green" in e.value.message() and "empty" in e.value.message()

    r = requests.put(f"{admin}/admin/models/boosted/slots/green", json={"version": 2}, timeout=30)
    assert r.status_code == 200, r.text
    try:
        view = r.json()
        assert view["green"]["version"] == 2
        assert view["blue"]["version"] == 3
        assert view["weights"] == {"blue": 100, "green": 0}

        result = http.infer("boosted", [http_input(g2.input)], headers=green())
        assert result.get_response()["model_version"] == "2"
        assert_golden(result, g2)

        result = http.infer(
            "boosted", [http_input(g2.input, binary_data=False)], headers=green(),
            outputs=[httpclient.InferRequestedOutput("label", binary_data=False)],
        )
        assert result.get_response()["model_version"] == "2"
        assert_golden(result, g2, ("label",))

        result = grpc_client.infer("boosted", [grpc_input(g2.input)], headers=green())
        assert result.get_response().model_version == "2"
        assert_golden(result, g2)

        # Blue, and unpinned traffic (weights 100/0), still get version 3.
        result = http.infer("boosted", [http_input(g3.input)], headers={"x-slot": "blue"})
        assert result.get_response()["model_version"] == "3"
        assert_golden(result, g3)
        result = http.infer("boosted", [http_input(g3.input)])
        assert result.get_response()["model_version"] == "3"
        assert_golden(result, g3)

        # Version 2 is now pinnable by version as well.
        result = grpc_client.infer("boosted", [grpc_input(g2.input)], model_version="2")
        assert result.get_response().model_version == "2"
        assert_golden(result, g2)

        # Metadata lists both versions, live first, and answers per version.
        assert http.get_model_metadata("boosted")["versions"] == ["3", "2"]
        assert list(grpc_client.get_model_metadata("boosted").versions) == ["3", "2"]
        assert http.get_model_metadata("boosted", "2")["name"] == "boosted"
        assert grpc_client.get_model_metadata("boosted", "2").name == "boosted"
        assert http.is_model_ready("boosted", "2") is True
        assert grpc_client.is_model_ready("boosted", "2") is True
        with pytest.raises(InferenceServerException) as e:
            http.get_model_metadata("boosted", "9")
        assert e.value.status() == "404" and "version 9" in e.value.message()
    finally:
        r = requests.delete(f"{admin}/admin/models/boosted/slots/green", timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["green"] is None

    with pytest.raises(InferenceServerException) as e:
        http.infer("boosted", [http_input(g2.input)], headers=green())
    assert e.value.status() == "404"


def test_bad_slot_header(http):
    x = np.zeros((1, 20), np.float32)
    with pytest.raises(InferenceServerException) as e:
        http.infer("boosted", [http_input(x)], headers={"x-slot": "purple"})
    assert e.value.status() == "400"
    assert "x-slot" in e.value.message()


def test_grpc_metadata_of_a_version_not_loaded_while_green_is_filled(gateway, grpc_client):
    admin = gateway.admin_url
    r = requests.put(f"{admin}/admin/models/boosted/slots/green", json={"version": 2}, timeout=30)
    assert r.status_code == 200, r.text
    try:
        with pytest.raises(InferenceServerException) as e:
            md = grpc_client.get_model_metadata("boosted", "9")
            print(f"gRPC ModelMetadata(boosted, 9) answered: versions={list(md.versions)}")
        assert e.value.status() == "StatusCode.NOT_FOUND"
        assert "version 9" in e.value.message()
    finally:
        r = requests.delete(f"{admin}/admin/models/boosted/slots/green", timeout=30)
        assert r.status_code == 200, r.text
