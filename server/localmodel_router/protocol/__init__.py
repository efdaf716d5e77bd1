"""OpenAI request and response bodies, one module per endpoint family (named `protocol`, as vLLM does)."""
