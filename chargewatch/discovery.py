"""Finding the running local stack from a second terminal, and who holds a chDB folder.

`chargewatch up` writes `.data/stack.json` (its PID, the broker's address, the topic
namespace, the web ports, the chDB folder) and removes it when it stops. A command given
no KAFKA_BOOTSTRAP_SERVERS reads it and says so in one line; a file left by a stack that
died (its PID gone, or reused by another program) is ignored with one line. Lookups send
their questions to the stack's sink while it holds the chDB folder, instead of opening
the folder themselves: chDB allows one process per folder, and a second one prints
ClickHouse's "Code: 76 ... Cannot lock file" on its way to failing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console

from infra.errors import ConfigError
from infra.settings import Settings

DATA_DIR = Path(".data")
STACK_FILE = DATA_DIR / "stack.json"
DEFAULT_CHDB = "chdb://.data/chdb"

_err = Console(stderr=True, soft_wrap=True, highlight=False)


@dataclass(frozen=True, slots=True)
class RunningStack:
    """What `chargewatch up` tells other commands about itself."""

    pid: int
    pid_started: str | None
    """The process's start time (/proc/PID/stat field 22): tells a reused PID apart."""
    bootstrap_servers: str
    namespace: str
    partitions: int
    processor_port: int
    sink_port: int
    chdb_folder: str | None
    """The chDB folder the sink holds (absolute), or None when ClickHouse is a server."""
    database: str
    broker_pid: int | None
    worker_pid: int | None

    @property
    def sink_url(self) -> str:
        return f"http://127.0.0.1:{self.sink_port}"

    @property
    def processor_url(self) -> str:
        return f"http://127.0.0.1:{self.processor_port}"


def process_started(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot, or None (no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name may hold spaces


def is_running(pid: int, started: str | None) -> bool:
    """True when `pid` runs and is the process that started at `started` (not a reuse)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    return started is None or process_started(pid) in (None, started)


def write_stack(stack: RunningStack, path: Path = STACK_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(stack), indent=2))
    temporary.replace(path)


def remove_stack(path: Path = STACK_FILE) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def read_stack(path: Path = STACK_FILE) -> tuple[RunningStack | None, str | None]:
    """The running stack, or None; the second value is a note to print about a stale file."""
    try:
        stack = RunningStack(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError, TypeError) as exc:
        return None, f"ignoring {path}: not a stack file ({exc})"
    if not is_running(stack.pid, stack.pid_started):
        return None, (f"ignoring {path}: the stack that wrote it (pid {stack.pid}) is not "
                      "running any more")
    return stack, None


def running_stack(path: Path = STACK_FILE, quiet: bool = False) -> RunningStack | None:
    """The running stack, printing the one-line note about a stale file unless `quiet`."""
    stack, note = read_stack(path)
    if note and not quiet:
        _err.print(note)
    return stack


def use_running_stack(settings: Settings, path: Path = STACK_FILE) -> Settings:
    """With no bootstrap servers configured: the running stack's broker, topics and web
    ports, said in one line on stderr. Settings are returned unchanged otherwise."""
    if settings.kafka.bootstrap_servers:
        return settings
    stack = running_stack(path)
    if stack is None:
        return settings
    _err.print(f"using the stack `chargewatch up` runs (pid {stack.pid}, {path}): Kafka "
               f"{stack.bootstrap_servers}, topics {stack.namespace}.*, sink {stack.sink_url}")
    return settings.model_copy(update={
        "kafka": settings.kafka.model_copy(update={
            "bootstrap_servers": stack.bootstrap_servers, "namespace": stack.namespace,
            "partitions": stack.partitions}),
        "processor": settings.processor.model_copy(update={"web_port": stack.processor_port}),
        "sink": settings.sink.model_copy(update={"web_port": stack.sink_port}),
    })


def require_bootstrap(settings: Settings) -> str:
    if not settings.kafka.bootstrap_servers:
        raise ConfigError("no Kafka to talk to: start the local stack with `chargewatch up` "
                          "(in another terminal, in this folder) or set KAFKA_BOOTSTRAP_SERVERS")
    return settings.kafka.bootstrap_servers


def require_kafka(settings: Settings, timeout_s: float = 10.0) -> str:
    """The bootstrap servers, once a broker there has answered: an unreachable or refusing
    Kafka is one line (exit 2) within `timeout_s`, not librdkafka's retries."""
    from infra.kafka_config import check_connection, client_config

    bootstrap = require_bootstrap(settings)
    check_connection(client_config(settings.kafka, bootstrap), timeout_s)
    return bootstrap


def chdb_folder(url: str) -> Path | None:
    """The absolute folder of a `chdb://` URL (relative ones against the working folder)."""
    if not url.startswith("chdb://"):
        return None
    return Path(url.removeprefix("chdb://")).absolute()


def absolute_chdb(settings: Settings) -> Settings:
    """`chdb://.data/chdb` (the default) as `chdb:///abs/.data/chdb`: clickhouse-connect reads
    `chdb://.data/chdb` as host `.data` and database `chdb`, which does not exist."""
    from pydantic import SecretStr

    url = settings.clickhouse.url.get_secret_value()
    folder = chdb_folder(url)
    if folder is None or url == f"chdb://{folder}":
        return settings
    return settings.model_copy(update={"clickhouse": settings.clickhouse.model_copy(
        update={"url": SecretStr(f"chdb://{folder}")})})


def chdb_holder(folder: Path) -> int | None:
    """The PID of another process that has the chDB folder open, or None.

    ClickHouse holds an exclusive lock on `<folder>/status` (which also names its PID) while
    it runs; a non-blocking lock attempt tells whether someone does, without chDB itself.
    """
    status = folder / "status"
    try:
        fd = os.open(status, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _status_pid(status)
            return None if pid == os.getpid() else (pid or -1)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _status_pid(status: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in status.read_text().splitlines():
            if line.startswith("PID:"):
                return int(line.split(":", 1)[1])
    return None


def check_chdb_free(settings: Settings) -> None:
    """Refuse in one line, before chDB prints its own lock error, when another process
    holds the configured chDB folder."""
    folder = chdb_folder(settings.clickhouse.url.get_secret_value())
    holder = chdb_holder(folder) if folder else None
    if holder is None:
        return
    stack = running_stack(quiet=True)
    who = "`chargewatch up`" if stack and holder == stack.pid else f"process {holder}"
    raise ConfigError(f"the chDB folder {folder} is in use by {who}: one process may open it "
                      "at a time; stop that process first, or set CLICKHOUSE_URL to another "
                      "folder")
