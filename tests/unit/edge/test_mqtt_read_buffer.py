"""The chunked reader between paho and the broker socket, on a real socket pair."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest
from bellhop_edge.mqtt import READ_CHUNK, _ReadBuffer


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_small_reads_are_served_from_one_recv(pair: tuple[socket.socket, socket.socket]) -> None:
    sock, peer = pair
    peer.sendall(b"\x30\x05hello\x30\x05world")
    reader = _ReadBuffer(sock)
    assert reader.recv(1) == b"\x30"
    # Everything else arrived with the first read and waits in the buffer.
    assert reader.pending() == 13
    assert reader.recv(1) == b"\x05"
    assert reader.recv(5) == b"hello"
    assert reader.recv(1) == b"\x30"
    assert reader.recv(1) == b"\x05"
    assert reader.recv(100) == b"world"
    assert reader.pending() == 0


def test_empty_buffer_and_quiet_socket_raise_like_the_socket(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sock, peer = pair
    reader = _ReadBuffer(sock)
    with pytest.raises(BlockingIOError):
        reader.recv(1)
    peer.sendall(b"ab")
    assert reader.recv(1) == b"a"
    assert reader.recv(1) == b"b"
    with pytest.raises(BlockingIOError):
        reader.recv(1)


def test_a_packet_split_across_reads_is_reassembled(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sock, peer = pair
    reader = _ReadBuffer(sock)
    peer.sendall(b"xyz")
    assert reader.recv(1) == b"x"
    # paho asks for the whole body and accepts what there is.
    assert reader.recv(10) == b"yz"
    peer.sendall(b"0123456789")
    assert reader.recv(8) == b"01234567"
    assert reader.recv(8) == b"89"


def test_more_than_one_chunk_is_read_in_order(pair: tuple[socket.socket, socket.socket]) -> None:
    sock, peer = pair
    peer.setblocking(False)
    data = bytes(range(256)) * (READ_CHUNK // 256 * 3)
    sent = 0
    got = bytearray()
    reader = _ReadBuffer(sock)
    while len(got) < len(data):
        if sent < len(data):
            with contextlib.suppress(BlockingIOError):
                sent += peer.send(data[sent:])
        try:
            got += reader.recv(7)
        except BlockingIOError:
            continue
    assert bytes(got) == data


def test_end_of_stream_and_socket_attributes_pass_through(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sock, peer = pair
    reader = _ReadBuffer(sock)
    assert reader.fileno() == sock.fileno()
    peer.close()
    assert reader.recv(1) == b""
