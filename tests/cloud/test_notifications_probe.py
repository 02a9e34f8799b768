"""Probing the notification routes: tampered cursors, hostile URLs, other tenants."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.cloud.support import Api, expect


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("text", ["²", "9" * 150, str(2**63), "-1", " 5", "0x10", "1_000"])
async def test_a_tampered_attempts_cursor_is_a_422_naming_it(api: Api, text: str) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Org")
    hotel_id = await api.hotel(owner, org_id, "Hotel")
    answer = await api.http.get(
        f"/v1/hotels/{hotel_id}/notifications/attempts",
        params={"cursor": cursor(text)},
        headers=owner.headers,
    )
    problem: Any = expect(answer, 422)
    assert [e["loc"] for e in problem["errors"]] == [["query", "cursor"]]
