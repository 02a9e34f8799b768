"""Bellhop cloud relay: multi-tenant accounts, hotels, gateway enrolment and the REST API.

Entry points: `create_app(config)` builds the ASGI app, `load_config(path)` reads
the configuration, `Relay.open(config)` opens the services for embedding and
tests. Errors are rooted at `RelayError` (see `bellhop_cloud.errors`).
"""

from __future__ import annotations

__version__ = "0.1.0"
