"""The gateway sink's InfluxDB client and its one write call (bellhop_edge.influx)."""

from __future__ import annotations

from collections.abc import Callable

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision

from bellhop_edge.config import InfluxConfig

__all__ = ["client", "write_call"]


def client(influx: InfluxConfig) -> InfluxDBClient:
    """The client of the sink's InfluxDB; gzip on (its default level)."""
    return InfluxDBClient(
        url=influx.url,
        token=influx.resolved_token(),
        org=influx.org,
        timeout=int(influx.timeout_s * 1000),
        enable_gzip=True,
    )


def write_call(client: InfluxDBClient, influx: InfluxConfig) -> Callable[[list[str]], None]:
    """One synchronous write of a batch's lines to the configured bucket."""
    api = client.write_api(write_options=SYNCHRONOUS)

    def write(lines: list[str]) -> None:
        # The generated class holds its values as plain strings; the stubs want the class.
        precision: WritePrecision = WritePrecision.MS  # type: ignore[assignment]
        api.write(influx.bucket, influx.org, "\n".join(lines), write_precision=precision)

    return write
