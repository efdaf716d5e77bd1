"""Start the llama.cpp backend on the bundled SmolLM2 model and stream one chat answer over gRPC.

python scripts/demo_backend.py ["your question"]
"""

from __future__ import annotations

import sys
import time

import grpc

from localmodel.wire import backend_pb2, backend_pb2_grpc
from scripts.model_files import ensure_model
from tests.support.backend_process import BackendProcess


def main() -> None:
    question = " ".join(sys.argv[1:]) or "Write one sentence about the sea."
    model = ensure_model("smollm2")
    print(f"starting `localmodel backend --model {model.name}` ...", file=sys.stderr)
    started = time.monotonic()
    with BackendProcess(["--model", str(model), "--log-level", "WARNING"]) as backend:
        backend.wait_ready()
        print(
            f"backend ready on {backend.address} after {time.monotonic() - started:.1f}s\n", file=sys.stderr
        )
        with grpc.insecure_channel(backend.address) as channel:
            request = backend_pb2.PredictOptions(
                messages=[backend_pb2.Message(role="user", content=question)],
                use_tokenizer_template=True,
                tokens=128,
                temperature=0.2,
                seed=1,
            )
            print(f"> {question}")
            for reply in backend_pb2_grpc.BackendStub(channel).PredictStream(request):
                print(reply.message.decode(), end="", flush=True)
        ms = reply.timing_token_generation
        print(f"\n\n[{reply.tokens} tokens, {reply.tokens / ms * 1000:.0f} tokens/s, {reply.finish_reason}]")


if __name__ == "__main__":
    main()
