"""deploy/kserve/ against KServe's CRD schemas, strictly, plus what the schemas leave out."""

import copy
import json
import re
from functools import cache
from typing import Any

import pytest
from jsonschema import Draft7Validator

from tests.deployfiles import (
    CRDS,
    exposed_ports,
    manifests,
    of_kind,
    runtime_container,
    runtime_env,
    runtime_named,
    runtimes,
    server_settings,
)

SCHEMA_FILES = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservices.v1beta1.schema.json",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "servingruntimes.v1alpha1.schema.json",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): (
        "clusterservingruntimes.v1alpha1.schema.json"
    ),
}
KSERVE_PROTOCOLS = {"v1", "v2", "grpc-v1", "grpc-v2"}
V2SERVE_PROTOCOLS = {"v2", "grpc-v2"}
ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DEPLOYMENT_MODES = {"Knative", "Standard"}

needs_crds = pytest.mark.skipif(
    not CRDS.is_dir(),
    reason=f"KServe CRD schemas not found at {CRDS} (shared/kserve-crds beside the checkout)",
)


def strict(schema: Any) -> Any:
    """Unknown fields become errors, as with ``kubectl --validate=strict``."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
    elif isinstance(schema, list):
        schema = [strict(item) for item in schema]
    return schema


@cache
def validator(api_version: str, kind: str) -> Draft7Validator:
    schema = json.loads((CRDS / SCHEMA_FILES[(api_version, kind)]).read_text())
    return Draft7Validator(strict(schema))


def schema_errors(document: dict[str, Any]) -> list[str]:
    check = validator(document["apiVersion"], document["kind"])
    return [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in check.iter_errors(document)
    ]


def deployment_mode(isvc: dict[str, Any]) -> str:
    return str(isvc["metadata"].get("annotations", {}).get("serving.kserve.io/deploymentMode"))


def test_there_is_each_kind_of_manifest():
    kinds = [doc["kind"] for doc in manifests().values()]
    assert {"ServingRuntime", "ClusterServingRuntime", "InferenceService"} <= set(kinds)
    modes = {deployment_mode(isvc) for isvc in of_kind("InferenceService").values()}
    assert modes == DEPLOYMENT_MODES


@needs_crds
@pytest.mark.parametrize("name", sorted(manifests()))
def test_manifest_matches_its_crd_strictly(name):
    document = manifests()[name]
    assert (document.get("apiVersion"), document.get("kind")) in SCHEMA_FILES, name
    assert schema_errors(document) == []


@needs_crds
@pytest.mark.parametrize(
    ("path", "typo"),
    [
        (["spec", "predictor", "model"], "storageURI"),
        (["spec", "predictor"], "minReplica"),
        (["spec"], "predictors"),
    ],
)
def test_strict_validation_catches_a_misspelt_field(path, typo):
    [isvc] = [d for d in of_kind("InferenceService").values() if deployment_mode(d) == "Knative"][
        :1
    ]
    broken = copy.deepcopy(isvc)
    node = broken
    for key in path:
        node = node[key]
    node[typo] = 1
    errors = schema_errors(broken)
    assert any(typo in error for error in errors), errors


@needs_crds
def test_strict_validation_leaves_free_form_fields_alone():
    # metadata and annotations are free-form maps in the CRD.
    isvc = copy.deepcopy(next(iter(of_kind("InferenceService").values())))
    isvc["metadata"]["annotations"]["example.com/anything"] = "yes"
    assert schema_errors(isvc) == []


@pytest.mark.parametrize("name", sorted(runtimes()))
def test_runtime_protocols_and_format(name):
    spec = runtimes()[name]["spec"]
    assert set(spec["protocolVersions"]) <= V2SERVE_PROTOCOLS
    assert "sklearn" in {f["name"] for f in spec["supportedModelFormats"]}


def test_every_served_format_is_listed_and_has_an_example():
    """The formats runtimes.formats serves, each listed by every runtime, never
    autoSelected (v2serve is chosen by name), with one example InferenceService each."""
    served = {"sklearn", "xgboost", "lightgbm", "mlflow"}
    for name, runtime in runtimes().items():
        listed = runtime["spec"]["supportedModelFormats"]
        assert {f["name"] for f in listed} == served, name
        assert not any(f.get("autoSelect") for f in listed), name
    examples = {
        isvc["spec"]["predictor"]["model"]["modelFormat"]["name"]
        for isvc in of_kind("InferenceService").values()
    }
    assert examples == served


def test_the_main_runtime_speaks_both_v2_protocols():
    for kind in ("ServingRuntime", "ClusterServingRuntime"):
        main = [d for d in of_kind(kind).values() if d["metadata"]["name"] == "v2serve"]
        assert main, f"no {kind} named v2serve"
        assert set(main[0]["spec"]["protocolVersions"]) == V2SERVE_PROTOCOLS


def test_cluster_runtime_has_the_same_spec_as_the_namespaced_one():
    namespaced = [
        d for d in of_kind("ServingRuntime").values() if d["metadata"]["name"] == "v2serve"
    ]
    cluster = list(of_kind("ClusterServingRuntime").values())
    assert [c["spec"] for c in cluster] == [namespaced[0]["spec"]]


@pytest.mark.parametrize("name", sorted(of_kind("InferenceService")))
def test_inference_service_admission_rules(name):
    isvc = of_kind("InferenceService")[name]
    assert ISVC_NAME.match(isvc["metadata"]["name"])
    assert deployment_mode(isvc) in DEPLOYMENT_MODES
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    sources = [k for k in ("storageUri", "storageUris") if k in model or k in predictor]
    assert len(sources) == 1, f"storageUri and storageUris are exclusive; found {sources}"
    assert model["protocolVersion"] in KSERVE_PROTOCOLS
    runtime = runtime_named(model["runtime"])
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert model["modelFormat"]["name"] in formats
    if "version" in model["modelFormat"]:
        versions = {
            (f["name"], f.get("version")) for f in runtime["spec"]["supportedModelFormats"]
        }
        assert (model["modelFormat"]["name"], model["modelFormat"]["version"]) in versions
    assert predictor["minReplicas"] >= 1, "a cold start loads every model first"
    assert predictor["maxReplicas"] >= predictor["minReplicas"]


def _container_ports(isvc: dict[str, Any]) -> list[dict[str, Any]]:
    """The ports KServe gives the pod: the runtime's merged with the model's, by number."""
    runtime = runtime_named(isvc["spec"]["predictor"]["model"]["runtime"])
    merged = {p["containerPort"]: p for p in runtime_container(runtime).get("ports", [])}
    merged.update(
        {p["containerPort"]: p for p in isvc["spec"]["predictor"]["model"].get("ports", [])}
    )
    return list(merged.values())


@pytest.mark.parametrize("name", sorted(of_kind("InferenceService")))
def test_ports_follow_the_deployment_mode_and_protocol(name):
    isvc = of_kind("InferenceService")[name]
    settings = server_settings()
    ports = _container_ports(isvc)
    assert {p["containerPort"] for p in ports} <= exposed_ports()
    if deployment_mode(isvc) == "Knative":
        assert len(ports) == 1, "Knative serves exactly one container port"
        [port] = ports
        if isvc["spec"]["predictor"]["model"]["protocolVersion"].startswith("grpc"):
            assert (port["name"], port["containerPort"]) == ("h2c", settings["grpc_port"])
        else:
            assert port["name"] != "h2c" and port["containerPort"] == settings["http_port"]
    else:
        # The first port becomes the Service's port 80: REST; gRPC keeps its number.
        assert ports[0]["containerPort"] == settings["http_port"]
        assert settings["grpc_port"] in {p["containerPort"] for p in ports}


@pytest.mark.parametrize("name", sorted(runtimes()))
def test_runtime_ports_env_and_metrics_agree_with_settings_and_dockerfile(name):
    runtime = runtimes()[name]
    settings = server_settings()
    env = runtime_env(runtime)
    assert int(env["MLSERVER_HTTP_PORT"]) == settings["http_port"]
    assert int(env["MLSERVER_GRPC_PORT"]) == settings["grpc_port"]
    assert int(env["MLSERVER_METRICS_PORT"]) == settings["metrics_port"]
    for port in runtime_container(runtime)["ports"]:
        assert port["containerPort"] in exposed_ports()
        if port["name"] == "h2c":
            assert port["containerPort"] == settings["grpc_port"]
    annotations = runtime["spec"]["annotations"]
    assert int(annotations["prometheus.kserve.io/port"]) == settings["metrics_port"]
    assert annotations["prometheus.kserve.io/path"] == "/metrics"


@pytest.mark.parametrize("name", sorted(runtimes()))
def test_runtime_gets_what_kserve_injects_and_reads_models_from_the_mount(name):
    env = runtime_env(runtimes()[name])
    assert env["MLSERVER_MODEL_NAME"] == "{{.Name}}"
    assert env["MLSERVER_MODEL_URI"] == "/mnt/models"
    assert env["MLSERVER_MODEL_REPOSITORY_ROOT"] == "/mnt/models"


@pytest.mark.parametrize("name", sorted(runtimes()))
def test_runtime_runs_as_the_image_user(name):
    from tests.deployfiles import numeric_user

    security = runtime_container(runtimes()[name])["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == numeric_user()[0]


def probe_paths() -> set[tuple[str, int]]:
    """Every HTTP path a probe asks, with its port: httpGet probes and exec'd urlopen calls."""
    found = set()
    for runtime in runtimes().values():
        container = runtime_container(runtime)
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            handler = container.get(probe)
            if not handler:
                continue
            if "httpGet" in handler:
                found.add((handler["httpGet"]["path"], int(handler["httpGet"]["port"])))
            else:
                script = " ".join(handler["exec"]["command"])
                for port, path in re.findall(r"http://127\.0\.0\.1:(\d+)(/[^'\"]*)", script):
                    found.add((path, int(port)))
    return found


def test_probes_ask_liveness_and_readiness_on_the_rest_port():
    settings = server_settings()
    assert probe_paths() == {
        ("/v2/health/live", settings["http_port"]),
        ("/v2/health/ready", settings["http_port"]),
    }
    for runtime in runtimes().values():
        container = runtime_container(runtime)
        assert {"livenessProbe", "readinessProbe"} <= set(container)


def test_probe_paths_are_routes_of_mlservers_rest_app():
    from mlserver.rest.app import create_app
    from mlserver.settings import Settings

    # Route registration only stores the handlers; no data plane is needed to list paths.
    app = create_app(Settings(), data_plane=None, model_repository_handlers=None)
    routes = {route.path for route in app.routes if "GET" in getattr(route, "methods", set())}
    assert {path for path, _ in probe_paths()} <= routes


# Envoy's (and so Istio's and KServe's) default idle timeout for upstream connections.
ENVOY_IDLE_TIMEOUT = 60


@pytest.mark.parametrize("name", sorted(runtimes()))
def test_keep_alive_outlives_the_proxy_idle_timeout(name):
    """kserve#5448: a server that closes an idle connection before the proxy does races
    the proxy's next request on it, which then gets a 503."""
    from runtimes.settings import ServerOptions

    env = runtime_env(runtimes()[name])
    default = ServerOptions().http_keep_alive_timeout
    assert default > ENVOY_IDLE_TIMEOUT
    value = env.get("V2SERVE_HTTP_KEEP_ALIVE_TIMEOUT")
    effective = ServerOptions(http_keep_alive_timeout=value or default).http_keep_alive_timeout
    assert effective > ENVOY_IDLE_TIMEOUT, (name, effective)
    assert "http_keep_alive_timeout" not in server_settings().get("v2serve", {})


CANARY_AUTOSCALING = {"maxReplicas", "scaleMetric", "scaleMetricType", "scaleTarget", "autoScaling"}


@pytest.mark.parametrize(
    "name", sorted(n for n, isvc in of_kind("InferenceService").items() if "canary" in isvc["spec"])
)
def test_a_canary_follows_kserve_admission_rules_and_serves_the_same_protocol(name):
    """kserve#5672's webhook: Standard mode only, unique names, shares summing to at most
    100, no autoscaling on a canary. Ours: the same runtime and protocol as the stable one."""
    isvc = of_kind("InferenceService")[name]
    assert deployment_mode(isvc) == "Standard"
    canaries = isvc["spec"]["canary"]
    names = [canary["predictor"]["name"] for canary in canaries]
    assert len(set(names)) == len(names) and all(ISVC_NAME.match(n) for n in names)
    assert sum(canary["trafficPercent"] for canary in canaries) <= 100
    stable = isvc["spec"]["predictor"]["model"]
    for canary in canaries:
        assert not CANARY_AUTOSCALING & set(canary["predictor"]), canary
        model = canary["predictor"]["model"]
        assert (model["runtime"], model["protocolVersion"]) == (
            stable["runtime"],
            stable["protocolVersion"],
        )
        assert model["storageUri"] != stable["storageUri"]
