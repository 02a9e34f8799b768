"""The `bellhop` command."""
