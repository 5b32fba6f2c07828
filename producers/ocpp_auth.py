"""Who may talk to the OCPP gateway, and how much: the charger allow-list and per-charger limits.

OCPP security profile 1 (HTTP Basic over ws://) and profile 2 (Basic over TLS wss://), as in
the OCPP-J 1.6 security whitepaper and OCPP 2.0.1 part 2: the Basic username is the charge
point id (the last segment of the URL path), the password is checked against an allow-list
file whose passwords are stored only as salted scrypt hashes:

    chargers:
      CP-0001: "scrypt$16384$8$1$<salt, base64>$<hash, base64>"

`chargewatch gateway hash-password CP-0001` prints such a line. Passwords are never logged
and never kept after the check; an unknown charger costs the same scrypt work as a known one,
so timing does not tell which ids exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from producers.errors import GatewaySecurityError

SCHEME = "scrypt"
DEFAULT_COST = (2**14, 8, 1)
"""scrypt n, r, p: ~16 MiB and tens of milliseconds per check, paid once per handshake."""
_MAX_N, _MAX_RP = 2**20, 64
_SALT_BYTES, _HASH_BYTES = 16, 32


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=length,
                          maxmem=128 * n * r * p + 2**20)


def hash_password(password: str, cost: tuple[int, int, int] = DEFAULT_COST) -> str:
    """The allow-list form of a password: scheme, cost, a fresh random salt and the hash."""
    if not password:
        raise ValueError("an empty password cannot authenticate a charger")
    n, r, p = cost
    salt = os.urandom(_SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p, _HASH_BYTES)
    return "$".join([SCHEME, str(n), str(r), str(p), base64.b64encode(salt).decode(),
                     base64.b64encode(digest).decode()])


@dataclass(frozen=True)
class PasswordHash:
    """One parsed allow-list entry; `matches` is constant-time in the password's hash."""

    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes = field(repr=False)

    @classmethod
    def parse(cls, encoded: str) -> PasswordHash:
        """Raises ValueError saying what is wrong with the encoded form."""
        parts = encoded.split("$")
        if len(parts) != 6 or parts[0] != SCHEME:
            raise ValueError(f"expected {SCHEME}$N$r$p$salt$hash (from `chargewatch gateway "
                             f"hash-password`), got {len(parts)} '$'-separated parts")
        try:
            n, r, p = (int(part) for part in parts[1:4])
            salt = base64.b64decode(parts[4], validate=True)
            digest = base64.b64decode(parts[5], validate=True)
        except (ValueError, binascii.Error) as exc:
            raise ValueError(f"unreadable cost, salt or hash: {exc}") from None
        if n < 2 or n > _MAX_N or n & (n - 1) or not 1 <= r * p <= _MAX_RP:
            raise ValueError(f"scrypt cost out of range: n must be a power of two up to "
                             f"{_MAX_N}, r*p at most {_MAX_RP}")
        if len(salt) < 8 or len(digest) < 16:
            raise ValueError("salt or hash too short")
        return cls(n, r, p, salt, digest)

    def matches(self, password: str) -> bool:
        candidate = _scrypt(password, self.salt, self.n, self.r, self.p, len(self.digest))
        return hmac.compare_digest(candidate, self.digest)


_DECOY = PasswordHash(*DEFAULT_COST, salt=b"\0" * _SALT_BYTES, digest=b"\0" * _HASH_BYTES)
"""Checked for unknown chargers, so an unknown id takes as long as a wrong password."""


@dataclass(frozen=True)
class ChargerAllowList:
    """The chargers allowed to connect, each with its password hash."""

    chargers: Mapping[str, PasswordHash]

    @classmethod
    def load(cls, path: Path) -> ChargerAllowList:
        """Read a YAML allow-list; any problem raises GatewaySecurityError naming file and entry."""
        try:
            data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise GatewaySecurityError(
                f"charger allow-list {path}: {exc.strerror or exc}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise GatewaySecurityError(f"charger allow-list {path} is not valid YAML: "
                                   f"{str(exc).splitlines()[0]}") from None
        return cls.from_data(data, str(path))

    @classmethod
    def from_data(cls, data: Any, source: str = "allow-list") -> ChargerAllowList:
        if not isinstance(data, dict) or not isinstance(data.get("chargers"), dict):
            raise GatewaySecurityError(f"charger allow-list {source}: expected a mapping "
                                   f"'chargers: {{<charge point id>: <password hash>}}'")
        chargers: dict[str, PasswordHash] = {}
        for charger_id, encoded in data["chargers"].items():
            if not isinstance(charger_id, str) or not charger_id:
                raise GatewaySecurityError(f"charger allow-list {source}: charge point id "
                                       f"{charger_id!r} is not a non-empty string")
            if not isinstance(encoded, str):
                raise GatewaySecurityError(f"charger allow-list {source}, charger {charger_id!r}: "
                                       f"the password hash must be a string")
            try:
                chargers[charger_id] = PasswordHash.parse(encoded)
            except ValueError as exc:
                raise GatewaySecurityError(
                    f"charger allow-list {source}, charger {charger_id!r}: {exc}") from None
        if not chargers:
            raise GatewaySecurityError(f"charger allow-list {source} lists no chargers: "
                                   f"no charger could connect")
        return cls(chargers)

    def check(self, charger_id: str, password: str) -> bool:
        """True when this charger is listed and the password is its own."""
        return self.refusal(charger_id, password) is None

    def refusal(self, charger_id: str, password: str) -> str | None:
        """Why this charger may not connect ("unknown charger", "wrong password"), or None.
        For the operator's log only: the charger is told nothing but 401."""
        entry = self.chargers.get(charger_id)
        matched = (entry or _DECOY).matches(password)
        if entry is None:
            return "unknown charger (not in the allow-list)"
        return None if matched else "wrong password"


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(username, password) of an `Authorization: Basic ...` header, None when absent or
    malformed (RFC 7617: the user id ends at the first colon)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class TokenBucket:
    """A per-charger message rate limit: `rate` messages a second on average, bursts of
    `burst`. Mutable by nature; one per charger id, kept across reconnects."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False means over the limit."""
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


@dataclass(frozen=True)
class GatewayPolicy:
    """The gateway's security profile and limits. Profile 0 (no allow-list, no TLS) is the
    default; profile 1 sets `allow_list`; profile 2 sets `allow_list` and `ssl_context`."""

    allow_list: ChargerAllowList | None = None
    ssl_context: ssl.SSLContext | None = None
    max_message_bytes: int = 65_536
    max_messages_per_s: float = 10.0
    burst: int = 50

    @property
    def profile(self) -> int:
        if self.allow_list is None:
            return 0
        return 2 if self.ssl_context is not None else 1


def server_tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """TLS 1.2+ server context for profile 2 (the charger checks the gateway's certificate)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise GatewaySecurityError(f"gateway TLS certificate {cert_file} / key {key_file}: "
                               f"{exc}") from None
    return context
