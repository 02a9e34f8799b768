"""The relay's end of the bridge from each hotel's gateway (docs/bridge.md).

plan        a batch of events as rows per table, checked, without I/O
sync        the database side: applying plans and snapshots, the lanes they move
identities  gateways' enrolment (and their lanes) for the handshake, looked up in batches
links       each gateway's link row (connected, close reason, backlog), in group commits
endpoint    `BridgeEndpoint`: the asyncio driver over `bellhop_bridge.RelayConnection`
"""
