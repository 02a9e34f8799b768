"""Bellhop device protocol v1 and the device simulator."""
