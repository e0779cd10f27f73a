"""What the server tells its operators: Prometheus metrics, request logs, log format,
OpenTelemetry spans.

Fed from two places only: the data plane's ``infer`` (every request, REST and gRPC) and
the version lifecycle (``runtimes.repository.lifecycle``, as a ``LifecycleListener``).
"""
