"""MLflow model folders (``MLmodel``), served by the sklearn runtime without MLflow.

MLflow removed its MLServer integration, so a model logged with ``mlflow.sklearn`` has
no V2 server left. v2serve reads the folder itself; ``mlflow`` is never imported:
- the artifact comes from the ``sklearn`` flavor (or a ``python_function`` flavor whose
  ``loader_module`` is ``mlflow.sklearn``), and goes through the same safe-artifact policy
  as any other (sha256 pin, sklearn version policy, skops trusted types);
- any other flavor, a custom ``python_model`` above all, is refused: loading it would run
  arbitrary code;
- the signature becomes the declared schema, so it wins over derivation and a
  contradiction fails the load (``runtimes.schema``);
- the scikit-learn version recorded in ``MLmodel`` or pinned in ``requirements.txt`` /
  ``python_env.yaml`` is checked by ``sklearn_version_policy``;
- ``input_example.json`` gives the warm-up and verification rows.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from mlserver.types import MetadataTensor

MLMODEL = "MLmodel"
_SKLEARN_LOADER = "mlflow.sklearn"

# MLflow's column types -> V2 datatypes.
COLUMN_DATATYPES = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}
# numpy dtypes of tensor-based signatures -> V2 datatypes.
TENSOR_DATATYPES = {
    "float64": "FP64",
    "float32": "FP32",
    "float16": "FP16",
    "int64": "INT64",
    "int32": "INT32",
    "int16": "INT16",
    "int8": "INT8",
    "uint64": "UINT64",
    "uint32": "UINT32",
    "uint16": "UINT16",
    "uint8": "UINT8",
    "bool": "BOOL",
    "object": "BYTES",
    "str": "BYTES",
}
_SKLEARN_PIN = re.compile(r"(?<![\w-])scikit[-_]learn\s*==\s*([0-9][0-9A-Za-z.+-]*)")


class MLflowModelRefused(Exception):
    """An MLmodel folder v2serve will not serve, and why."""


@dataclass(frozen=True)
class MLflowModel:
    artifact: Path
    serialization_format: str
    inputs: list[MetadataTensor] = field(default_factory=list)
    outputs: list[MetadataTensor] = field(default_factory=list)
    optional_inputs: tuple[str, ...] = ()
    sklearn_versions: tuple[str, ...] = ()
    """Versions recorded in MLmodel or pinned by the environment files."""
    example: Any = None
    """The ``input_example``: split-orient columns (a dict) or rows (a list)."""
    example_columns: tuple[str, ...] = ()


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise MLflowModelRefused(f"{path.name} cannot be read: {exc}") from exc


def _artifact(folder: Path, flavors: dict[str, Any]) -> tuple[Path, str]:
    sklearn = flavors.get("sklearn")
    pyfunc = flavors.get("python_function") or {}
    if sklearn:
        name, serialization = sklearn.get("pickled_model"), sklearn.get("serialization_format")
    elif pyfunc.get("loader_module") == _SKLEARN_LOADER:
        name, serialization = pyfunc.get("model_path"), "cloudpickle"
    else:
        loader = pyfunc.get("loader_module") or "none"
        raise MLflowModelRefused(
            f"its flavors are {sorted(flavors)} (python_function loader_module '{loader}'); "
            "v2serve serves only sklearn-flavored MLflow models and never runs a python_model"
        )
    if not isinstance(name, str) or not name:
        raise MLflowModelRefused("the sklearn flavor names no pickled_model")
    artifact = folder / name
    if artifact.is_dir() or not artifact.is_file():
        raise MLflowModelRefused(f"the sklearn flavor's artifact '{name}' is not a file")
    return artifact, str(serialization or "cloudpickle")


def _column_tensors(spec: list[dict[str, Any]]) -> tuple[list[MetadataTensor], tuple[str, ...]]:
    tensors, optional = [], []
    for index, column in enumerate(spec):
        kind = str(column.get("type"))
        datatype = COLUMN_DATATYPES.get(kind)
        if datatype is None:
            raise MLflowModelRefused(f"signature column type '{kind}' has no V2 datatype")
        name = str(column.get("name", f"column-{index}"))
        tensors.append(MetadataTensor(name=name, datatype=datatype, shape=[-1]))
        if column.get("required") is False:
            optional.append(name)
    return tensors, tuple(optional)


def _tensor_tensors(spec: list[dict[str, Any]], default: str) -> list[MetadataTensor]:
    tensors = []
    for index, entry in enumerate(spec):
        tensor = entry.get("tensor-spec") or {}
        dtype = str(tensor.get("dtype"))
        datatype = TENSOR_DATATYPES.get(dtype)
        if datatype is None:
            raise MLflowModelRefused(f"signature tensor dtype '{dtype}' has no V2 datatype")
        name = str(entry.get("name") or (default if index == 0 else f"{default}-{index}"))
        shape = [int(d) for d in tensor.get("shape") or [-1]]
        tensors.append(MetadataTensor(name=name, datatype=datatype, shape=shape))
    return tensors


def _signature(
    signature: dict[str, Any] | None,
) -> tuple[list[MetadataTensor], list[MetadataTensor], tuple[str, ...]]:
    """Declared inputs and outputs; an unnamed single output is ``predict``'s type."""
    if not signature:
        return [], [], ()
    inputs_spec = json.loads(signature.get("inputs") or "[]")
    outputs_spec = json.loads(signature.get("outputs") or "[]")
    optional: tuple[str, ...] = ()
    if inputs_spec and inputs_spec[0].get("type") == "tensor":
        inputs = _tensor_tensors(inputs_spec, "input-0")
    else:
        inputs, optional = _column_tensors(inputs_spec)
    outputs: list[MetadataTensor] = []
    if len(outputs_spec) == 1:
        entry = outputs_spec[0]
        if entry.get("type") == "tensor":
            (output,) = _tensor_tensors([{**entry, "name": "predict"}], "predict")
            outputs = [output]
        elif entry.get("type") in COLUMN_DATATYPES:
            datatype = COLUMN_DATATYPES[str(entry["type"])]
            outputs = [MetadataTensor(name="predict", datatype=datatype, shape=[-1])]
    return inputs, outputs, optional


def _sklearn_versions(folder: Path, flavors: dict[str, Any]) -> tuple[str, ...]:
    versions = set()
    recorded = (flavors.get("sklearn") or {}).get("sklearn_version")
    if recorded:
        versions.add(str(recorded))
    for name in ("requirements.txt", "python_env.yaml", "conda.yaml"):
        path = folder / name
        if path.is_file():
            versions.update(_SKLEARN_PIN.findall(path.read_text(errors="replace")))
    return tuple(sorted(versions))


def _example(folder: Path, info: dict[str, Any] | None) -> tuple[Any, tuple[str, ...]]:
    if not info or not info.get("artifact_path"):
        return None, ()
    path = folder / str(info["artifact_path"])
    if not path.is_file():
        return None, ()
    try:
        example = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, ()
    if isinstance(example, dict) and "columns" in example and "data" in example:
        return example["data"], tuple(str(c) for c in example["columns"])
    if isinstance(example, dict) and "inputs" in example:
        example = example["inputs"]
    return (example, ()) if isinstance(example, list) else (None, ())


def read_mlflow_model(folder: Path) -> MLflowModel:
    """What v2serve needs from an MLflow model folder; MLflowModelRefused says why not."""
    mlmodel = _read_yaml(folder / MLMODEL)
    if not isinstance(mlmodel, dict) or not isinstance(mlmodel.get("flavors"), dict):
        raise MLflowModelRefused("MLmodel has no flavors")
    flavors = mlmodel["flavors"]
    artifact, serialization = _artifact(folder, flavors)
    inputs, outputs, optional = _signature(mlmodel.get("signature"))
    example, columns = _example(folder, mlmodel.get("saved_input_example_info"))
    return MLflowModel(
        artifact=artifact,
        serialization_format=serialization,
        inputs=inputs,
        outputs=outputs,
        optional_inputs=optional,
        sklearn_versions=_sklearn_versions(folder, flavors),
        example=example,
        example_columns=columns,
    )
