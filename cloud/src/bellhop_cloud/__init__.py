"""Bellhop cloud relay."""
