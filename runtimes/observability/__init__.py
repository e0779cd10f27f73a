"""What the server tells its operators: Prometheus metrics, request logs, log format.

Fed from two places only: the data plane's ``infer`` (every request, REST and gRPC) and
the server's ``load_version``/``retire_version`` (model lifecycle).
"""
