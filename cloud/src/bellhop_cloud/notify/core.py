"""The notification schedule is shared with the gateway: it lives in
`bellhop_bridge.notify_core`. The names the relay's API modules import from here
are kept."""

from bellhop_bridge.notify_core import Channel, Contact, Policy

__all__ = ["Channel", "Contact", "Policy"]
