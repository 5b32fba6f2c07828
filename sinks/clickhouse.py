"""Opening ClickHouse: a server over HTTP(S) or the embedded chDB engine on a local folder.

Both give the same clickhouse-connect client API, so nothing else in `sinks/` knows which
one it talks to. The database is never part of the URL: every function takes it as a
parameter and `migrate` creates it.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from sinks.errors import ClickHouseUnavailable

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def masked(url: str) -> str:
    """The URL with its password replaced, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def connect(url: str) -> Client:
    """A client for `chdb:///abs/path` (embedded) or `http(s)://user:password@host:port`.

    Raises ClickHouseUnavailable with the (masked) URL and the cause when it cannot connect;
    a chDB folder already held by another process is the usual cause locally.
    """
    scheme = urlsplit(url).scheme
    if scheme not in ("chdb", "http", "https"):
        raise ClickHouseUnavailable(
            f"unsupported ClickHouse URL {masked(url)!r}: use chdb:///path/to/folder "
            "or http(s)://user:password@host:port")
    try:
        return clickhouse_connect.get_client(dsn=url)
    except Exception as exc:  # noqa: BLE001 - every driver failure means "unavailable" here
        hint = (" (one process may open a chDB folder at a time: is a worker holding it?)"
                if scheme == "chdb" else "")
        raise ClickHouseUnavailable(
            f"cannot connect to ClickHouse at {masked(url)}: {exc}{hint}") from exc


def check_identifier(name: str) -> str:
    """Return `name` if it is a plain ClickHouse identifier; database names end up in DDL."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a valid ClickHouse database name: {name!r} "
                         "(letters, digits and _ only, not starting with a digit)")
    return name
