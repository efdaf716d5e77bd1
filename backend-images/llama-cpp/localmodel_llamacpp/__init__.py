"""localmodel's llama.cpp backend: a gRPC server speaking the backend contract over llama-cpp-python."""
