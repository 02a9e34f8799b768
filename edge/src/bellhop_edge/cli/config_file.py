"""The gateway's configuration file as every `bellhop edge` command reads it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from bellhop_edge.config import EdgeConfig

__all__ = ["load_config_or_exit"]


def load_config_or_exit(path: Path) -> EdgeConfig:
    """The gateway's configuration; one that does not load is printed and exit 2 (every
    `bellhop edge` command that reads one)."""
    from bellhop_edge.config import load_config
    from bellhop_edge.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
