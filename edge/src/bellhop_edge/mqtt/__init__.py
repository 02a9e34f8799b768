"""The gateway's link to the hotel's MQTT broker.

link           `MqttLink`: connect, subscribe, reconnect, acknowledge, publish
_compat        every private aiomqtt/paho access, version-bounded
"""

from bellhop_edge.mqtt.link import LinkState, MqttLink, backoff

__all__ = ["LinkState", "MqttLink", "backoff"]
