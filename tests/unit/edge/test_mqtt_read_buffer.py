"""The chunked reader between paho and the broker socket, on a real socket pair."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import pytest
from bellhop_edge.mqtt._compat import READ_CHUNK, ReadBuffer


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


async def _next_turn() -> None:
    await asyncio.sleep(0)


async def test_small_reads_are_served_from_one_recv(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sock, peer = pair
    peer.sendall(b"\x30\x05hello\x30\x05world")
    reader = ReadBuffer(sock, asyncio.get_running_loop())
    assert reader.recv(1) == b"\x30"
    # Everything else arrived with the first read and waits in the buffer.
    assert reader.pending() == 13
    assert reader.recv(1) == b"\x05"
    assert reader.recv(5) == b"hello"
    assert reader.recv(1) == b"\x30"
    assert reader.recv(1) == b"\x05"
    assert reader.recv(100) == b"world"
    assert reader.pending() == 0


async def test_the_socket_is_read_once_per_loop_turn(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sock, peer = pair
    reader = ReadBuffer(sock, asyncio.get_running_loop())
    with pytest.raises(BlockingIOError):
        reader.recv(1)
    peer.sendall(b"ab")
    assert reader.recv(1) == b"a"
    assert reader.recv(1) == b"b"
    peer.sendall(b"cd")
    # More data waits in the socket, but this turn has had its read: a busy
    # broker cannot keep the event loop in the reader.
    with pytest.raises(BlockingIOError):
        reader.recv(1)
    assert reader.pending() == 0
    await _next_turn()
    assert reader.recv(2) == b"cd"


async def test_a_packet_split_across_reads_is_reassembled(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sock, peer = pair
    reader = ReadBuffer(sock, asyncio.get_running_loop())
    peer.sendall(b"xyz")
    assert reader.recv(1) == b"x"
    # paho asks for the whole body and accepts what there is.
    assert reader.recv(10) == b"yz"
    peer.sendall(b"0123456789")
    await _next_turn()
    assert reader.recv(8) == b"01234567"
    assert reader.recv(8) == b"89"


async def test_more_than_one_chunk_is_read_in_order(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sock, peer = pair
    peer.setblocking(False)
    data = bytes(range(256)) * (READ_CHUNK // 256 * 3)
    sent = 0
    got = bytearray()
    reader = ReadBuffer(sock, asyncio.get_running_loop())
    while len(got) < len(data):
        if sent < len(data):
            with contextlib.suppress(BlockingIOError):
                sent += peer.send(data[sent:])
        try:
            got += reader.recv(7)
        except BlockingIOError:
            await _next_turn()
    assert bytes(got) == data


async def test_end_of_stream_and_socket_attributes_pass_through(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sock, peer = pair
    reader = ReadBuffer(sock, asyncio.get_running_loop())
    assert reader.fileno() == sock.fileno()
    peer.close()
    assert reader.recv(1) == b""
