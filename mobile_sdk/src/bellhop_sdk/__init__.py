"""Bellhop mobile SDK: one client for the hotel LAN and the cloud (not built yet)."""

__all__: list[str] = []
