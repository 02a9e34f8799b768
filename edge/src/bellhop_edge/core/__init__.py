"""The gateway's sans-I/O cores: plain classes fed events, returning what to do.

    model       domain records (rooms, devices, state, alerts, commands, live events)
    hotel       registry, current and desired state, liveness
    replay      which messages were already stored (receipts committed with their writes)
    rules       alert rules with hysteresis and timers
    alerts      the lifecycle of every open alert
    commands    the command book: at most once per id, never after expiry
    ops         write ops: what the cores ask the store to record
    ingest      a device message and a time in; write ops and live events out
    delivery    which broker messages may be acknowledged, held or redelivered

Nothing here imports asyncio, sqlite3, grpc or aiomqtt (a test checks it),
nor reads a clock: every input carries its time. The drivers around them
(`gateway`, `commands`, `store`, `mqtt`, `api`) do the I/O.
"""
