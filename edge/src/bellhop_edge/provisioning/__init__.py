"""Device provisioning: registry entries, broker credentials, ACL, TLS and bundles.

records       the frozen records: broker files and endpoint, site settings, devices, bundles
reload        `Reload` and its two kinds: SIGHUP to a pid file, or the operator's command
accounts      `accounts.json`, the record of broker accounts (hashes only), and the id rule
broker_files  Mosquitto's password file, ACL and config as the gateway renders them
pki           the hotel CA and the broker's TLS certificate
provisioner   `Provisioner`: add, list, revoke, rotate, export, sync; the gateway's account
bundles       the firmware header, the simulator file and `ca.pem` handed to each device
"""

from bellhop_edge.provisioning.bundles import (
    HEADER_FORMAT,
    render_header,
    render_simulator,
    write_bundles,
)
from bellhop_edge.provisioning.provisioner import Provisioner
from bellhop_edge.provisioning.records import (
    BrokerEndpoint,
    BrokerFiles,
    Bundle,
    BundleFiles,
    DeviceCredentials,
    NewDevice,
    SiteSettings,
)
from bellhop_edge.provisioning.reload import CommandReload, Reload, SignalReload

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
