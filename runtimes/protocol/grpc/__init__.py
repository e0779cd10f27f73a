"""gRPC: Triton's ``inference.GRPCInferenceService`` and the standard health service.

MLServer's gRPC servicer speaks a variant of the V2 service: its ModelStreamInfer returns
bare ModelInferResponse messages (tritonclient's stream never calls back), ModelConfig and
ModelStatistics do not exist, ModelReady for an unknown model is UNKNOWN, and double and
uint64 parameters are dropped. v2serve serves Triton's service definition instead, a
superset of KServe's ``grpc_predict_v2.proto``, over the same DataPlane and registry.
"""
