"""Alert notifications: each hotel's policy, a durable queue, a worker that sends through
Apprise (docs/notifications.md)."""
