"""Bellhop staff console: rooms, devices and alerts in a browser, through the SDK.

    from bellhop_console import ConsoleConfig, create_app

    app = create_app(ConsoleConfig(cloud_url="https://relay.example", lan_target="10.0.0.5:7443"))

`bellhop console` serves it with uvicorn. `create_app` is imported on first use, so
that `bellhop --help` (which imports `bellhop_console.cli`) does not load Starlette.
"""

from typing import Any

from bellhop_console.config import ConfigError, ConsoleConfig

__all__ = ["ConfigError", "ConsoleConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from bellhop_console.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
