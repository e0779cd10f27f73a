"""Compiled inference: an estimator converted to ONNX and run by ONNX Runtime.

It is served only when proven equal to scikit-learn on a verification set (docs/compiled.md).

- ``tolerance``: what "equal" means; importable without MLServer (the e2e tests use it).
- ``convert``: estimator -> ONNX graph -> ONNX Runtime session.
- ``rows``: the verification set (schema, tree split thresholds, the version's sample).
- ``predictor``: runs the session and returns arrays shaped and typed as sklearn's.
- ``backend``: chooses the backend per ``inference_backend`` and says why.

This ``__init__`` imports nothing, so that ``tolerance`` stays light.
"""
