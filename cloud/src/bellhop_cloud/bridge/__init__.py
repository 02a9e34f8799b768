"""The relay's end of the bridge from each hotel's gateway (docs/bridge.md).

plan        a batch of events as rows per table, checked, without I/O
sync        the database side: each gateway's link row, applying plans and snapshots
endpoint    `BridgeEndpoint`: the asyncio driver over `bellhop_bridge.RelayConnection`
"""
