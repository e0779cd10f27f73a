"""Triton's protocol extensions, protocol-neutral: model configuration and statistics."""
