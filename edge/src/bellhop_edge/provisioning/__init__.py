"""Device provisioning: registry entries, broker credentials, ACL, TLS and bundles."""

from bellhop_edge.provisioning.provisioner import (
    HEADER_FORMAT,
    BrokerEndpoint,
    BrokerFiles,
    Bundle,
    BundleFiles,
    CommandReload,
    DeviceCredentials,
    NewDevice,
    Provisioner,
    Reload,
    SignalReload,
    SiteSettings,
    render_header,
    render_simulator,
    write_bundles,
)

__all__ = [
    "HEADER_FORMAT",
    "BrokerEndpoint",
    "BrokerFiles",
    "Bundle",
    "BundleFiles",
    "CommandReload",
    "DeviceCredentials",
    "NewDevice",
    "Provisioner",
    "Reload",
    "SignalReload",
    "SiteSettings",
    "render_header",
    "render_simulator",
    "write_bundles",
]
