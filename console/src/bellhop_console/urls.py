"""Ids put into the console's URLs: each one a single path segment, percent-encoded.

Hotel, room, device and alert ids come from the servers (a gateway chooses room ids),
so an id such as `r1/../../alerts`, `r1?x=1` or `r1#x` must not change which page a
link or a form's action leads to. Python builds links with `url_path`; templates encode
each id with the `segment` filter (registered in `web.py`); `static/console.js` uses
`encodeURIComponent`, which encodes the same characters.

An id that is exactly `.` or `..` cannot be made safe this way (browsers resolve
`%2E%2E` as `..` too); the SDK refuses such ids, and so should the servers.
"""

from __future__ import annotations

from urllib.parse import quote

__all__ = ["segment", "url_path"]

# What encodeURIComponent leaves as it is, so server- and script-built links agree.
_SAFE = "-_.!~*'()"


def segment(value: object) -> str:
    """`value` as one URL path segment: every character outside the unreserved set
    (and encodeURIComponent's few marks) is percent-encoded, '/' included."""
    return quote(str(value), safe=_SAFE)


def url_path(*parts: object) -> str:
    """An absolute path of `parts`, each encoded as one segment: url_path("hotels", h)."""
    return "/" + "/".join(segment(p) for p in parts)
