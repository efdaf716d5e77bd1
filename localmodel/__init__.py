"""localmodel: GGUF models on Kubernetes behind an OpenAI-compatible API, with gRPC llama.cpp backends."""

__version__ = "0.1.0"
