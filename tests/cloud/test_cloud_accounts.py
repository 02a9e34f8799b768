"""Accounts through the REST API: register, login, refresh rotation, logout, passwords."""

from __future__ import annotations

import asyncio

from bellhop_cloud.relay import Relay

from tests.cloud.support import PASSWORD, Api, expect


async def test_register_login_and_profile(api: Api) -> None:
    ana = await api.account("ana")
    me = expect(await api.http.get("/v1/me", headers=ana.headers), 200)
    assert me["email"] == ana.email
    assert me["id"] == ana.user_id
    renamed = expect(
        await api.http.patch("/v1/me", json={"display_name": "Ana P."}, headers=ana.headers), 200
    )
    assert renamed["display_name"] == "Ana P."


async def test_email_is_unique_whatever_its_case(api: Api) -> None:
    await api.account("ana")
    response = await api.http.post(
        "/v1/auth/register",
        json={"email": api.email("ana").upper(), "password": PASSWORD, "display_name": "x"},
    )
    assert response.status_code == 409
    assert response.json()["code"] == "email_taken"


async def test_short_password_and_bad_email_are_refused_without_echo(api: Api) -> None:
    response = await api.http.post(
        "/v1/auth/register",
        json={"email": "not-an-email", "password": "short-pw", "display_name": "x"},
    )
    problem = expect(response, 422)
    assert problem["code"] == "invalid_request"
    assert {tuple(e["loc"]) for e in problem["errors"]} == {
        ("body", "email"),
        ("body", "password"),
    }
    assert "short-pw" not in response.text


async def test_stored_password_is_an_argon2id_hash(api: Api, relay: Relay) -> None:
    import sqlalchemy as sa
    from bellhop_cloud.db.schema import users

    await api.account("ana")
    async with relay.store.read() as conn:
        stored = (await conn.execute(sa.select(users.c.password_hash))).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


async def test_wrong_password_and_unknown_account_look_the_same(api: Api) -> None:
    ana = await api.account("ana")
    wrong = await api.http.post("/v1/auth/login", json={"email": ana.email, "password": "nope"})
    unknown = await api.http.post(
        "/v1/auth/login", json={"email": api.email("nobody"), "password": "nope"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["code"] == unknown.json()["code"] == "invalid_credentials"
    assert wrong.headers["www-authenticate"].startswith("Bearer")


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(api: Api) -> None:
    ana = await api.account("ana")
    first = expect(
        await api.http.post("/v1/auth/refresh", json={"refresh_token": ana.refresh_token}), 200
    )
    assert first["refresh_token"] != ana.refresh_token
    # A stolen copy of the old token is replayed: the family dies, the thief gets nothing.
    replay = await api.http.post("/v1/auth/refresh", json={"refresh_token": ana.refresh_token})
    assert replay.status_code == 401
    assert replay.json()["code"] == "refresh_token_reused"
    after = await api.http.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert after.status_code == 401
    assert after.json()["code"] == "refresh_token_invalid"


async def test_concurrent_refreshes_of_one_token_yield_one_session(api: Api) -> None:
    ana = await api.account("ana")
    results = await asyncio.gather(
        *(
            api.http.post("/v1/auth/refresh", json={"refresh_token": ana.refresh_token})
            for _ in range(4)
        )
    )
    assert sorted(r.status_code for r in results).count(200) <= 1


async def test_other_sessions_survive_a_reuse_in_one_family(api: Api) -> None:
    ana = await api.account("ana")
    laptop = await api.login(ana.email)
    await api.http.post("/v1/auth/refresh", json={"refresh_token": ana.refresh_token})
    await api.http.post("/v1/auth/refresh", json={"refresh_token": ana.refresh_token})
    still = await api.http.post("/v1/auth/refresh", json={"refresh_token": laptop["refresh_token"]})
    assert still.status_code == 200


async def test_logout_ends_the_session_and_is_idempotent(api: Api) -> None:
    ana = await api.account("ana")
    body = {"refresh_token": ana.refresh_token}
    assert (await api.http.post("/v1/auth/logout", json=body)).status_code == 204
    assert (await api.http.post("/v1/auth/logout", json=body)).status_code == 204
    refused = await api.http.post("/v1/auth/refresh", json=body)
    assert refused.json()["code"] == "refresh_token_invalid"


async def test_password_change_ends_other_sessions(api: Api) -> None:
    ana = await api.account("ana")
    other = await api.login(ana.email)
    wrong = await api.http.post(
        "/v1/me/password",
        json={"current_password": "not it", "new_password": "a brand new password"},
        headers=ana.headers,
    )
    assert wrong.status_code == 403
    fresh = expect(
        await api.http.post(
            "/v1/me/password",
            json={"current_password": PASSWORD, "new_password": "a brand new password"},
            headers=ana.headers,
        ),
        200,
    )
    for old in (ana.refresh_token, other["refresh_token"]):
        response = await api.http.post("/v1/auth/refresh", json={"refresh_token": old})
        assert response.status_code == 401
    assert (
        await api.http.post("/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    ).status_code == 200
    assert (
        await api.http.post("/v1/auth/login", json={"email": ana.email, "password": PASSWORD})
    ).status_code == 401
    await api.login(ana.email, "a brand new password")


async def test_refresh_token_is_not_an_access_token_and_vice_versa(api: Api) -> None:
    ana = await api.account("ana")
    as_access = await api.http.get(
        "/v1/me", headers={"Authorization": f"Bearer {ana.refresh_token}"}
    )
    assert as_access.status_code == 401
    as_refresh = await api.http.post("/v1/auth/refresh", json={"refresh_token": ana.access_token})
    assert as_refresh.status_code == 401
