"""The faster-whisper backend: speech to text (OpenAI's transcriptions and translations) over the
Backend gRPC contract, on the shared backend runtime (localmodel/backend_server.py).

`__main__` is the command line, `servicer` the gRPC calls, `options` the contract's messages as validated
settings, `engine` faster-whisper (CTranslate2) itself.
"""
