"""Test access to the local broker process (see bellhop_edge.localbroker)."""

from bellhop_edge.localbroker import (
    Credentials,
    MosquittoBroker,
    free_port,
    require_mosquitto,
    wait_for_port,
)

__all__ = ["Credentials", "MosquittoBroker", "free_port", "require_mosquitto", "wait_for_port"]
