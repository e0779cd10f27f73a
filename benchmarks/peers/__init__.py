"""The peers ``make bench`` compares v2serve with, besides vanilla MLServer.

- ``asgi_probe``: a bare ASGI app (uvicorn + httptools + uvloop, orjson, a numpy
  LogisticRegression), the ceiling of Python's HTTP stack for the light model.
- ``grpc_probe``: a bare ``grpc.aio`` servicer on the vendored protos doing the same numpy
  inference from ``raw_input_contents``, the ceiling of grpcio.
- ``triton_serve``: a real ``tritonserver`` 2.51 through PyTriton 0.7.0, run in its own
  venv (``.bench-tools/pytriton``), serving the same artifacts through ``@batch``.

Each one is a script run in a process of its own; none imports v2serve or MLServer.
"""
