"""The gateway's SQLite store: one database file per hotel.

    store = EdgeStore.open(path)            # migrates; reads + rare writes
    async with StoreWriter(path) as writer:  # the hot path, one thread
        writer.submit(PutTelemetry(points))
        await writer.flush()

Modules, each owning one thing:

    schema         tables, forward migrations, connections, transactions
    apply          write ops to SQL (the same on both write paths)
    history        telemetry series: raw points, staging, rollups, queries
    outbox         the sequence-numbered events the cloud must receive
    retention      how long each kind of record is kept, in small steps
    reads          `EdgeStore`: reads and rare writes
    writer         `StoreWriter`: the batching writer and its reports
    writer_thread  the writer thread's body

The write ops themselves are the cores' (`bellhop_edge.core.ops`). Every op
that the cloud must hear about appends its outbox row in the same
transaction as the record it mirrors. Durability, batching, back-pressure,
retention and the outbox encoding are described in docs/edge-store.md.
"""

from bellhop_edge.store.outbox import OutboxEntry, OutboxKind
from bellhop_edge.store.reads import EdgeStore, StoreCounts
from bellhop_edge.store.retention import RetentionReport
from bellhop_edge.store.schema import SCHEMA_VERSION, Synchronous
from bellhop_edge.store.writer import StoreWriter, WriterReport, WriterStats

__all__ = [
    "SCHEMA_VERSION",
    "EdgeStore",
    "OutboxEntry",
    "OutboxKind",
    "RetentionReport",
    "StoreCounts",
    "StoreWriter",
    "Synchronous",
    "WriterReport",
    "WriterStats",
]
