"""Bellhop mobile SDK."""
