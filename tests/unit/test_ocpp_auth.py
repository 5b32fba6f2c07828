"""The gateway's allow-list (hashed passwords, clear errors for a bad file), Basic header
parsing, the per-charger token bucket, and `chargewatch gateway hash-password`."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from chargewatch.cli import main
from chargewatch.gateway_cli import gateway_policy
from infra.errors import ConfigError
from infra.settings import load_settings
from producers.errors import GatewaySecurityError
from producers.ocpp_auth import (
    ChargerAllowList,
    GatewayPolicy,
    PasswordHash,
    TokenBucket,
    basic_credentials,
    hash_password,
)
from tests.tls import self_signed

pytestmark = pytest.mark.unit

CHEAP = (16, 1, 1)
"""A tiny scrypt cost so property tests run fast; the default is checked once."""


def test_default_cost_hash_verifies_and_is_salted() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second  # a fresh salt each time
    assert first.startswith("scrypt$16384$8$1$")
    assert "correct horse" not in first
    assert PasswordHash.parse(first).matches("correct horse")
    assert not PasswordHash.parse(first).matches("correct horse ")


@settings(max_examples=40, deadline=None)
@given(password=st.text(min_size=1, max_size=40), other=st.text(min_size=1, max_size=40))
def test_a_hash_matches_its_password_and_no_other(password: str, other: str) -> None:
    entry = PasswordHash.parse(hash_password(password, CHEAP))
    assert entry.matches(password)
    assert entry.matches(other) == (other == password)


def test_allow_list_checks_id_and_password() -> None:
    allow = ChargerAllowList.from_data({"chargers": {"CP-1": hash_password("pw-1", CHEAP),
                                                     "CP-2": hash_password("pw-2", CHEAP)}})
    assert allow.check("CP-1", "pw-1")
    assert not allow.check("CP-1", "pw-2")  # another charger's password
    assert not allow.check("CP-3", "pw-1")  # unknown charger
    assert not allow.check("CP-1", "")


def test_a_refusal_names_the_check_that_failed_for_the_log() -> None:
    allow = ChargerAllowList.from_data({"chargers": {"CP-1": hash_password("pw-1", CHEAP)}})
    assert allow.refusal("CP-1", "pw-1") is None
    assert allow.refusal("CP-1", "pw-2") == "wrong password"
    assert allow.refusal("CP-9", "pw-1") == "unknown charger (not in the allow-list)"


def test_empty_password_cannot_be_hashed() -> None:
    with pytest.raises(ValueError, match="empty password"):
        hash_password("")


@pytest.mark.parametrize(("content", "message"), [
    ("chargers: [", "not valid YAML"),
    ("- just a list", "expected a mapping 'chargers:"),
    ("chargers: {}", "lists no chargers"),
    ("chargers:\n  CP-1: 12", "charger 'CP-1': the password hash must be a string"),
    ("chargers:\n  CP-1: plaintext-password", "charger 'CP-1': expected scrypt$N$r$p$salt$hash"),
    ("chargers:\n  CP-1: scrypt$16384$8$1$!!$AAAA", "charger 'CP-1': unreadable"),
    ("chargers:\n  CP-1: scrypt$1000$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",
     "n must be a power of two"),
    ("chargers:\n  12: scrypt$16$1$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",
     "charge point id 12 is not a non-empty string"),
])
def test_bad_allow_list_files_say_what_is_wrong(tmp_path: Path, content: str,
                                                message: str) -> None:
    path = tmp_path / "chargers.yaml"
    path.write_text(content)
    with pytest.raises(GatewaySecurityError) as caught:
        ChargerAllowList.load(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_allow_list_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GatewaySecurityError, match="No such file"):
        ChargerAllowList.load(tmp_path / "absent.yaml")


def _basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(("header", "expected"), [
    (_basic("CP-1:secret"), ("CP-1", "secret")),
    (_basic("CP-1:with:colons"), ("CP-1", "with:colons")),
    (_basic("CP-1:"), ("CP-1", "")),
    ("basic " + base64.b64encode(b"a:b").decode(), ("a", "b")),
    (_basic("no-colon"), None),
    ("Bearer abc", None),
    ("Basic !!!not-base64", None),
    ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), None),
    ("", None),
    (None, None),
])
def test_basic_credentials(header: str | None, expected: tuple[str, str] | None) -> None:
    assert basic_credentials(header) == expected


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.4)  # 0.8 tokens: not yet
    assert bucket.take(0.5)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped


@settings(max_examples=200)
@given(rate=st.floats(0.1, 100), burst=st.integers(1, 20),
       gaps=st.lists(st.floats(0, 2), min_size=1, max_size=200))
def test_token_bucket_never_exceeds_burst_plus_rate_times_time(
        rate: float, burst: int, gaps: list[float]) -> None:
    bucket, now, taken = TokenBucket(rate, burst, 0.0), 0.0, 0
    for gap in gaps:
        now += gap
        taken += bucket.take(now)
    assert taken <= burst + rate * now + 1e-6


def test_policy_profile() -> None:
    allow = ChargerAllowList.from_data({"chargers": {"CP-1": hash_password("x", CHEAP)}})
    assert GatewayPolicy().profile == 0
    assert GatewayPolicy(allow_list=allow).profile == 1


def test_gateway_settings_need_their_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="security_profile 1 needs chargers_file"):
        load_settings(gateway={"security_profile": 1})
    with pytest.raises(ConfigError, match="needs tls_cert_file and tls_key_file"):
        load_settings(gateway={"security_profile": 2, "chargers_file": str(tmp_path / "c")})
    with pytest.raises(ConfigError, match="security_profile"):
        load_settings(gateway={"security_profile": 3})


def test_gateway_policy_from_settings(tmp_path: Path) -> None:
    chargers = tmp_path / "chargers.yaml"
    chargers.write_text(f"chargers:\n  CP-1: {hash_password('pw', CHEAP)}\n")
    cert, key = self_signed(tmp_path)
    policy = gateway_policy(load_settings(gateway={
        "security_profile": 2, "chargers_file": str(chargers), "tls_cert_file": str(cert),
        "tls_key_file": str(key), "max_message_bytes": 4096, "max_messages_per_s": 2.5,
        "burst_messages": 7}).gateway)
    assert policy.profile == 2
    assert (policy.max_message_bytes, policy.max_messages_per_s, policy.burst) == (4096, 2.5, 7)
    assert policy.allow_list is not None and policy.allow_list.check("CP-1", "pw")
    with pytest.raises(ConfigError, match="TLS certificate"):
        gateway_policy(load_settings(gateway={
            "security_profile": 2, "chargers_file": str(chargers), "tls_cert_file": str(key),
            "tls_key_file": str(key)}).gateway)
    chargers.write_text("chargers: {}")
    with pytest.raises(ConfigError, match="lists no chargers"):
        gateway_policy(load_settings(gateway={"security_profile": 1,
                                              "chargers_file": str(chargers)}).gateway)


def test_hash_password_command_prints_an_allow_list_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-Pa55\n"))
    assert main(["gateway", "hash-password", "CP/7"]) == 0
    out = capsys.readouterr().out
    assert "s3cret-Pa55" not in out
    allow = ChargerAllowList.from_data(yaml.safe_load("chargers:\n" + out))
    assert allow.check("CP/7", "s3cret-Pa55")
    assert not allow.check("CP/7", "s3cret-Pa56")


def test_hash_password_command_refuses_an_empty_password(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["gateway", "hash-password", "CP-1"]) == 2
    assert "empty password" in capsys.readouterr().err
