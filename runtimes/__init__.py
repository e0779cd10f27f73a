"""v2serve: scikit-learn models over the Open Inference Protocol, on MLServer 1.7.1.

This package must stay importable without MLServer so that test processes that use
``tritonclient.grpc`` (whose protobuf symbols clash with ``mlserver.grpc``) can import
the pure modules, such as ``runtimes.examples``.
"""
