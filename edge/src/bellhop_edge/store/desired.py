"""Desired state's per-field intents and merge outcomes, as the store keeps them (JSON)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bellhop_bridge.desired import FieldIntent, FieldOutcome, Reason, Result

__all__ = ["fields_from", "fields_json", "outcomes_from", "outcomes_json"]


def fields_json(fields: Mapping[str, FieldIntent]) -> str | None:
    if not fields:
        return None
    return json.dumps(
        {
            name: [i.value, i.set_at_ms, i.by, i.safety, i.safety_until_ms]
            for name, i in fields.items()
        }
    )


def fields_from(text: str | None) -> dict[str, FieldIntent]:
    if not text:
        return {}
    raw: dict[str, list[Any]] = json.loads(text)
    return {name: FieldIntent(*entry) for name, entry in raw.items()}


def outcomes_json(outcomes: tuple[FieldOutcome, ...]) -> str | None:
    if not outcomes:
        return None
    return json.dumps(
        [
            [
                o.field,
                o.result.value,
                o.reason.value,
                o.remote_value,
                o.remote_set_at_ms,
                o.local_value,
                o.local_set_at_ms,
                o.local_by,
                o.safety_until_ms,
            ]
            for o in outcomes
        ]
    )


def outcomes_from(text: str | None) -> tuple[FieldOutcome, ...]:
    if not text:
        return ()
    rows: list[list[Any]] = json.loads(text)
    return tuple(
        FieldOutcome(
            field, Result(result), Reason(reason), remote, remote_at, local, local_at, by, until
        )
        for field, result, reason, remote, remote_at, local, local_at, by, until in rows
    )
