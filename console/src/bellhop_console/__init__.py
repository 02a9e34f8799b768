"""Bellhop staff console: rooms, devices and alerts in a browser, through the SDK."""

__all__: list[str] = []
