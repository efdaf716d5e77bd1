"""Local mode's API socket: streamed tokens must leave as they are made, not in Nagle-delayed bursts."""

from __future__ import annotations

import asyncio
import socket

import pytest

from localmodel.local.runtime import bind_listener


def test_connections_accepted_on_the_listener_have_tcp_nodelay() -> None:
    async def accepted_nodelay() -> int:
        listener = bind_listener("127.0.0.1", 0)
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        try:
            return await asyncio.wait_for(accepted, timeout=10)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accepted_nodelay()) == 1


def test_a_port_in_use_is_a_clear_error() -> None:
    first = bind_listener("127.0.0.1", 0)
    first.listen()
    try:
        with pytest.raises(OSError, match="cannot listen on 127.0.0.1"):
            bind_listener("127.0.0.1", first.getsockname()[1])
    finally:
        first.close()
