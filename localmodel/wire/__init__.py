"""Generated gRPC stubs of proto/backend.proto; never edit (tests/unit/core/test_wire_fresh.py checks them)."""
