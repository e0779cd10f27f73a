"""Protocol adapters: they translate between HTTP/gRPC and the data plane, nothing more."""
