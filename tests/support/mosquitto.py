"""Test access to the local broker process (see bellhop_edge.localbroker), and a device's
own MQTT client on it.

    async with device_client(mosquitto, creds, "lisbon-1-light-101") as device:
        await device.publish(topic, payload, qos=1)
"""

from __future__ import annotations

from typing import Any

import aiomqtt
from bellhop_edge.localbroker import (
    Credentials,
    MosquittoBroker,
    PortTaken,
    free_port,
    require_mosquitto,
    use_port_range,
    wait_for_listener,
    wait_for_port,
)

__all__ = [
    "Credentials",
    "MosquittoBroker",
    "PortTaken",
    "device_client",
    "free_port",
    "require_mosquitto",
    "use_port_range",
    "wait_for_listener",
    "wait_for_port",
]


def device_client(
    broker: MosquittoBroker, creds: Credentials, identifier: str, **options: Any
) -> aiomqtt.Client:
    """An MQTT client with a device's credentials, on the broker's plain port; `options`
    go to aiomqtt as they are."""
    return aiomqtt.Client(
        broker.host,
        broker.port,
        username=creds.username,
        password=creds.password,
        identifier=identifier,
        timeout=10,
        **options,
    )
