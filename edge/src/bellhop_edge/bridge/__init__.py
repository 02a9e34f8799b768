"""The gateway's end of the bridge to the cloud relay (docs/bridge.md).

identity    enrolment: the gateway's key and the relay's address, `enrol`
client      `BridgeClient`: the asyncio driver over `bellhop_bridge.EdgeConnection`
snapshot    the hotel as the relay asks for it in a resync
trust       the relay's token keys, cached for the LAN API (`TrustCache`)
"""
