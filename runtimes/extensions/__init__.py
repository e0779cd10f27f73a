"""Triton's protocol extensions, protocol-neutral: model configuration, statistics, and
the trace and log settings."""
