"""The gateway's `[notify]` section: off by default, every refusal names its field, and a
channel's URL (its secrets) is never shown, neither in errors nor in the model."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from bellhop_edge.config import NotifyConfig, load_config
from bellhop_edge.core.model import AlertKind, AlertSeverity
from bellhop_edge.errors import ConfigError
from bellhop_edge.notify import CONTACT, policy_of

SECRET = "s3cret-lan-password"
HOOK = f"json://staff:{SECRET}@192.168.1.20:8080/alerts"
MAIL = "mailto://192.168.1.25:25?from=gateway@hotel.test&to=desk@hotel.test"


def refused(notify: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"hotel_id": "h1", "notify": notify})
    return str(caught.value)


def test_off_by_default() -> None:
    config = load_config(overrides={"hotel_id": "h1"})
    assert not config.notify.enabled
    assert config.notify.channels == ()


def test_channels_turn_it_on_and_their_secrets_stay_hidden() -> None:
    config = load_config(
        overrides={
            "hotel_id": "h1",
            "notify": {"channels": [HOOK, MAIL], "kinds": ["breach"], "severities": ["critical"]},
        }
    )
    notify = config.notify
    assert notify.enabled
    assert SECRET not in repr(notify)
    assert SECRET not in str(config)
    (contact,) = policy_of(notify).contacts
    assert contact.contact_id == CONTACT
    assert [(c.channel_id, c.url) for c in contact.channels] == [("ch1", HOOK), ("ch2", MAIL)]
    assert contact.wants("breach", "critical")
    assert not contact.wants("gas", "critical")
    assert not contact.wants("breach", "warning")


def test_from_a_file_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(f'hotel_id = "h1"\n[notify]\nchannels = ["{MAIL}"]\nattempts = 5\n')
    assert load_config(path).notify.attempts == 5
    monkeypatch.setenv("BELLHOP_EDGE_NOTIFY__CHANNELS", f'["{HOOK}"]')
    (url,) = load_config(path).notify.channels
    assert url.get_secret_value() == HOOK


@pytest.mark.parametrize(
    ("notify", "field", "why"),
    [
        ({"channels": ["file:///etc/passwd"]}, "notify.channels.0", "the scheme must be one of"),
        ({"channels": [MAIL, f"json://x:{SECRET}@/"]}, "notify.channels.1", "Apprise accepts"),
        ({"channels": [MAIL] * 6}, "notify.channels", "at most 5"),
        ({"channels": MAIL}, "notify.channels", "tuple"),
        ({"kinds": ["fire"]}, "notify.kinds.0", "'breach'"),
        ({"severities": ["urgent"]}, "notify.severities.0", "'critical'"),
        ({"attempts": 0}, "notify.attempts", "greater than or equal to 1"),
        ({"send_timeout_s": 0}, "notify.send_timeout_s", "greater than 0"),
        ({"poll_s": 120}, "notify.poll_s", "less than or equal to 60"),
        ({"retry_base_s": 10, "retry_max_s": 1}, "notify", "must not exceed retry_max_s"),
        ({"channel": [MAIL]}, "notify.channel", "Extra inputs"),
    ],
)
def test_each_refusal_names_its_field_and_never_the_url(
    notify: dict[str, object], field: str, why: str
) -> None:
    message = refused(notify)
    assert f"  {field}: " in message, message
    assert why in message, message
    assert SECRET not in message
    assert "192.168" not in message


def test_the_kinds_and_severities_are_the_alerts_own() -> None:
    # The config names them as literals (the core imports the config, not the reverse).
    kinds = typing.get_args(typing.get_args(NotifyConfig.model_fields["kinds"].annotation)[0])
    severities = NotifyConfig.model_fields["severities"].annotation
    assert set(kinds) == {k.value for k in AlertKind}
    assert set(typing.get_args(typing.get_args(severities)[0])) == {s.value for s in AlertSeverity}
