"""The channels (allowed schemes, validation, masking, sending) are shared with the
gateway: they live in `bellhop_bridge.notify_channels`. The names the relay's API
modules use from here are kept."""

from bellhop_bridge.notify_channels import ALLOWED_SCHEMES, MAX_URL, check_url, masked, scheme_of

__all__ = ["ALLOWED_SCHEMES", "MAX_URL", "check_url", "masked", "scheme_of"]
