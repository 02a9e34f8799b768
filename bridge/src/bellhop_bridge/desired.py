"""The desired-state conflict policy: a remote intent meets the edge's, field by field.

    meta = local_set({}, {"mode": "off"}, t1, "staff:front-desk", safety=True)
    result = merge(meta, 4, RemoteIntent({"mode": "heat"}, t2, "manager:ops", 3), now_ms=t3)
    result.values, result.meta, result.outcomes, result.conflicted

The edge drives the devices, so both sides' intents meet there: it merges each remote intent
that comes down the bridge and sends the outcome back up. Per field, the first rule that fits
decides (docs/conflicts.md has the policy in full). A removal (None) is a value like any
other; the edge keeps the fields it removed (value None in its meta), so that a stale intent
cannot bring them back. Pure: no I/O, no clock (`now_ms` is given), no argument is changed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, TypeAlias

from bellhop_bridge.frames import CONTROL

__all__ = ["MAX_FIELDS", "FieldIntent", "FieldOutcome", "Merge", "Reason", "RemoteIntent"]
__all__ += ["Result", "Value", "local_set", "merge"]

Value: TypeAlias = bool | int | float | str
_Local: TypeAlias = tuple[Value | None, int | None, str | None]  # value, set_at_ms, by

MAX_FIELDS: Final = 32  # per write, and per device counting its removed fields
MAX_TEXT: Final = 200  # a text value, and who set a field
MIN_MS: Final = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_MS: Final = 7_258_118_400_000  # 2200-01-01T00:00:00Z
_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")
# Values are stored in SQLite and cross the bridge in protobuf: integers must fit 64 bits.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


class Result(StrEnum):
    APPLIED = "applied"
    KEPT_LOCAL = "kept_local"


class Reason(StrEnum):
    NO_LOCAL_INTENT = "no_local_intent"
    SAME_VALUE = "same_value"
    REMOTE_LATER = "remote_later"
    LOCAL_LATER = "local_later"
    TIE_LOCAL_STANDS = "tie_local_stands"
    SAFETY_OVERRIDE = "safety_override"
    BASE_VERSION_CURRENT = "base_version_current"


_KEPT: Final = frozenset({Reason.SAFETY_OVERRIDE, Reason.LOCAL_LATER, Reason.TIE_LOCAL_STANDS})
# A conflict: a field kept local, or applied over a different local value that may be newer
# than the writer's base (one version per device, not per field: with a stale base, each counts).
_CONFLICTS: Final = _KEPT | {Reason.REMOTE_LATER}


@dataclass(frozen=True, slots=True)
class FieldIntent:
    """One side's intent for one field: value (None: removed), when by its own clock, who; on
    the edge, a safety override, in force until `safety_until_ms` (None: until set again)."""

    value: Value | None
    set_at_ms: int
    by: str
    safety: bool = False
    safety_until_ms: int | None = None

    def safety_in_force(self, now_ms: int) -> bool:
        """An unexpired safety override: it stands against any remote intent."""
        return self.safety and (self.safety_until_ms is None or now_ms < self.safety_until_ms)


@dataclass(frozen=True, slots=True)
class RemoteIntent:
    """A remote write: fields to set (None: remove), when by the cloud's clock, who, and the
    edge version the writer last saw (None: not known)."""

    fields: Mapping[str, Value | None]
    set_at_ms: int
    by: str
    base_version: int | None


@dataclass(frozen=True, slots=True)
class FieldOutcome:
    """What became of one remote field, with both sides' intents, for both APIs to show:
    local_* are None when the edge never set it; safety_until_ms is an override's expiry."""

    field: str
    result: Result
    reason: Reason
    remote_value: Value | None
    remote_set_at_ms: int
    local_value: Value | None
    local_set_at_ms: int | None
    local_by: str | None
    safety_until_ms: int | None


@dataclass(frozen=True, slots=True)
class Merge:
    """The merged desired state: `values` without removed fields, `meta` with them."""

    values: dict[str, Value]
    meta: dict[str, FieldIntent]
    outcomes: tuple[FieldOutcome, ...]
    conflicted: bool


def merge(
    local_meta: Mapping[str, FieldIntent], local_version: int, remote: RemoteIntent, now_ms: int
) -> Merge:
    """Apply `remote` to the edge's desired state (`local_meta` at `local_version`)."""
    _check_fields(local_meta)
    _check_int("local_version", local_version, 0, _INT_MAX)
    if remote.base_version is not None:
        _check_int("base_version", remote.base_version, 0, _INT_MAX)
    _check_int("now_ms", now_ms, MIN_MS, MAX_MS)
    _check_fields(remote.fields)
    # Exactly equal only: a base ahead of the edge means the edge's database went back.
    base_current = remote.base_version == local_version
    meta = dict(local_meta)
    outcomes = []
    for name in sorted(remote.fields):
        theirs = _checked(name, FieldIntent(remote.fields[name], remote.set_at_ms, remote.by))
        ours = local_meta.get(name)
        reason, meta[name] = _decide(ours, theirs, base_current=base_current, now_ms=now_ms)
        local: _Local = (ours.value, ours.set_at_ms, ours.by) if ours else (None, None, None)
        until = ours.safety_until_ms if ours and reason is Reason.SAFETY_OVERRIDE else None
        result = Result.KEPT_LOCAL if reason in _KEPT else Result.APPLIED
        outcome = FieldOutcome(name, result, reason, theirs.value, theirs.set_at_ms, *local, until)
        outcomes.append(outcome)
    _check_fields(meta)
    values = {name: i.value for name, i in sorted(meta.items()) if i.value is not None}
    conflicted = any(o.reason in _CONFLICTS for o in outcomes)
    return Merge(values, dict(sorted(meta.items())), tuple(outcomes), conflicted)


def local_set(
    local_meta: Mapping[str, FieldIntent],
    fields: Mapping[str, Value | None],
    set_at_ms: int,
    by: str,
    *,
    safety: bool = False,
    safety_until_ms: int | None = None,
) -> dict[str, FieldIntent]:
    """The edge's desired state after on-site staff set `fields` (None: remove). A local write
    replaces the field's intent, a safety override too: that is how staff lift one."""
    _check_fields(local_meta)
    _check_fields(fields)
    meta = dict(local_meta)
    for name in sorted(fields):
        intent = FieldIntent(fields[name], set_at_ms, by, safety, safety_until_ms)
        meta[name] = _checked(name, intent)
    _check_fields(meta)
    return dict(sorted(meta.items()))


def _decide(
    ours: FieldIntent | None, theirs: FieldIntent, *, base_current: bool, now_ms: int
) -> tuple[Reason, FieldIntent]:
    """Why the field ends as it does, and the intent it keeps."""
    if ours is None:
        return Reason.NO_LOCAL_INTENT, theirs
    # Before same_value: an override stays an override (flag, expiry, who) until it expires.
    if ours.safety_in_force(now_ms):
        return Reason.SAFETY_OVERRIDE, ours
    a, b = ours.value, theirs.value
    # 21 and 21.0 are one value (protobuf carries numbers as doubles); true and 1 are not.
    if isinstance(a, bool) == isinstance(b, bool) and a == b:
        # The value holds either way; the record keeps the later intent, so that a stale
        # intent arriving afterwards is still judged against the latest one.
        return Reason.SAME_VALUE, theirs if theirs.set_at_ms > ours.set_at_ms else ours
    if base_current:
        # Nothing local happened since the writer looked: its intent is newer, whatever the clocks.
        return Reason.BASE_VERSION_CURRENT, theirs
    if theirs.set_at_ms > ours.set_at_ms:
        return Reason.REMOTE_LATER, theirs
    # On a tie the edge's intent stands: it is what the device is already doing.
    tie = theirs.set_at_ms == ours.set_at_ms
    return (Reason.TIE_LOCAL_STANDS if tie else Reason.LOCAL_LATER), ours


# -- validation: every refusal names the field ------------------------------------------


def _check_fields(fields: Mapping[str, object]) -> None:
    """Names (and intents), and how many: MAX_FIELDS per write, and per device with removals."""
    for name, item in fields.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"{name!r}: a field name is 1-32 characters of [a-z][a-z0-9_]*")
        if isinstance(item, FieldIntent):
            _checked(name, item)
    if len(fields) > MAX_FIELDS:
        raise ValueError(f"{sorted(fields)[MAX_FIELDS]}: more than {MAX_FIELDS} fields")


def _checked(name: str, intent: FieldIntent) -> FieldIntent:
    """`intent` once its value, times and author are checked; raises ValueError naming the field."""
    _check_value(name, intent.value)
    _check_int(f"{name}: set_at_ms", intent.set_at_ms, MIN_MS, MAX_MS)
    _check_text(f"{name}: by", intent.by, required=True)
    if type(intent.safety) is not bool:
        raise ValueError(f"{name}: safety must be true or false")
    if intent.safety_until_ms is not None:
        if not intent.safety:
            raise ValueError(f"{name}: safety_until_ms is only for a safety override")
        _check_int(f"{name}: safety_until_ms", intent.safety_until_ms, MIN_MS, MAX_MS)
        if intent.safety_until_ms <= intent.set_at_ms:
            raise ValueError(f"{name}: safety_until_ms must be after set_at_ms")
    return intent


def _check_value(name: str, value: object) -> None:
    # Exact types: a subclass (an enum, a numpy number) would not cross the bridge as itself.
    if value is None or type(value) is bool:
        return
    if type(value) is int:
        _check_int(name, value, _INT_MIN, _INT_MAX)
    elif type(value) is float:
        if not math.isfinite(value):
            raise ValueError(f"{name}: a number must be finite")
    elif type(value) is str:
        _check_text(name, value, required=False)
    else:
        kind = type(value).__name__
        raise ValueError(f"{name}: {kind} is not a value (bool, int, float, str or None)")


def _check_text(what: str, text: object, *, required: bool) -> None:
    if not isinstance(text, str) or (required and not text):
        raise ValueError(f"{what}: must be {'non-empty ' if required else ''}text")
    if len(text) > MAX_TEXT:
        raise ValueError(f"{what}: longer than {MAX_TEXT} characters")
    if CONTROL.search(text):
        raise ValueError(f"{what}: holds control characters")


def _check_int(what: str, value: object, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        # Times are ms since the epoch: seconds or microseconds fall outside 2000-2200.
        span = "a time in ms, 2000 to 2200" if high == MAX_MS else f"from {low} to {high}"
        raise ValueError(f"{what}: must be an integer, {span}")
