"""The private aiomqtt/paho parts `mqtt/_compat.py` relies on are still there.

A new release of either library that moves them fails here, by name, rather
than as a gateway that silently stops acknowledging messages.
"""

from __future__ import annotations

import socket

import aiomqtt
from bellhop_edge.mqtt import _compat


def test_installed_releases_are_the_tested_ones() -> None:
    for name, version in _compat.installed().items():
        low, high = _compat.TESTED[name]
        assert low <= version <= high, f"{name} {version} is outside the tested {low}..{high}"


async def test_the_private_parts_exist_on_a_real_client() -> None:
    options = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    seen: list[aiomqtt.Message] = []
    client = aiomqtt.Client(
        "127.0.0.1",
        1,
        identifier="compat-check",
        queue_type=_compat.dispatching_queue(seen.append),
        socket_options=options,
    )
    paho = client._client
    for attribute in ("manual_ack_set", "ack", "disconnect", "socket", "on_socket_open"):
        assert hasattr(paho, attribute), f"paho client lost {attribute}"
    assert list(client._socket_options) == options
    _compat.enable_manual_ack(client)
    assert paho._manual_ack is True
    opened: list[object] = []
    _compat.read_in_chunks(client)
    _compat.on_socket_open(client, lambda mqttc, sock: opened.append(sock))
    # Open a loopback TCP socket as paho would: our hooks run, Nagle is off
    # and the read buffer is put in front of the socket.
    with socket.create_server(("127.0.0.1", 0)) as server:
        a = socket.create_connection(server.getsockname())
        b, _ = server.accept()
        try:
            a.setblocking(False)
            paho._sock = a
            hook = paho.on_socket_open
            assert hook is not None
            hook(paho, None, a)
            assert opened == [a]
            assert isinstance(paho._sock, _compat.ReadBuffer)
            assert a.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        finally:
            a.close()
            b.close()


async def test_the_dispatching_queue_hands_each_message_over_at_once() -> None:
    seen: list[aiomqtt.Message] = []
    queue = _compat.dispatching_queue(seen.append)()
    message = aiomqtt.Message("hotel/h/device/d/telemetry", b"{}", 1, False, 7, None)
    queue.put_nowait(message)
    assert seen == [message]
    assert queue.empty()
