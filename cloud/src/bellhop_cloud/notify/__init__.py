"""Alert notifications: each hotel's policy, a durable queue, a worker that sends through
Apprise (docs/notifications.md). The schedule and the channels are shared with the
gateway (bellhop_bridge.notify_core, notify_channels)."""
