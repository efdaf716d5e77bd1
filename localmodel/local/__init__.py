"""Local mode: LocalModel manifests served on one machine, backends as supervised processes."""

import os

# Set before gRPC loads (this package is imported before any of its modules, which import gRPC): local
# mode forks a backend while its router's gRPC channels are busy, and gRPC's fork handlers then restart
# gRPC threads in the child before it execs. That child crashed (SIGSEGV, or SIGABRT on a bad epoll
# descriptor) in 14 of 58 restarts under bench/soak.py; with the handlers off, 0 of 30. The child only
# execs the backend, which needs nothing of the parent's gRPC state.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
