"""Bellhop edge gateway."""
