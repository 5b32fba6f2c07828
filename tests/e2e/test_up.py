"""Running it yourself, as a user does: `chargewatch up` in one terminal, the other commands
in a second one with no settings at all, Ctrl-C, and `up` again on the same `.data`.

Every command is a process of its own started in the same folder; only `up` is given web
ports (other stacks may run on this machine), so the second terminal finds everything
through `.data/stack.json`. Expected sessions come from the simulator's truth files.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from chargewatch.discovery import process_started
from chargewatch.embedded import free_port

pytestmark = pytest.mark.e2e

_SETTINGS = ("KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_URL", "SCHEMA_REGISTRY_URL")
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k not in _SETTINGS and (not k.startswith("CHARGEWATCH_")
                                        or k == "CHARGEWATCH_CLOCK_OFFSET_S")}
"""The second terminal: no settings (the test-only clock offset passes through)."""


def terminal(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "chargewatch", *args], cwd=cwd,
                            env=CLEAN_ENV, capture_output=True, text=True, timeout=timeout)
    assert "Code: 76" not in result.stderr, result.stderr
    return result


def ok(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = terminal(cwd, *args, timeout=timeout)
    assert result.returncode == 0, (args, result.stderr[-3000:])
    return result


class Up:
    """`chargewatch up` in the first terminal."""

    def __init__(self, cwd: Path, log_name: str, started: list[Up]) -> None:
        self.cwd = cwd
        self.log = cwd / log_name
        env = {**CLEAN_ENV, "CHARGEWATCH_PROCESSOR__WEB_PORT": str(free_port()),
               "CHARGEWATCH_SINK__WEB_PORT": str(free_port())}
        with self.log.open("w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "chargewatch", "up"],
                                            cwd=cwd, env=env, stdout=log, stderr=log)
        started.append(self)
        self.stack = self._wait_for_stack(240)

    def _wait_for_stack(self, timeout_s: float) -> dict[str, Any]:
        path = self.cwd / ".data" / "stack.json"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"up exited: {self.log.read_text()[-3000:]}"
            if path.exists():
                stack = json.loads(path.read_text())
                if stack["pid"] == self.process.pid:
                    return dict(stack)
            time.sleep(0.5)
        raise AssertionError(f"up did not start: {self.log.read_text()[-3000:]}")

    def interrupt(self) -> None:
        """Ctrl-C; every process it started must be gone afterwards."""
        started = dict(descendants(self.process.pid))
        assert {self.stack["broker_pid"], self.stack["worker_pid"]} <= set(started)
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(120) == 0, self.log.read_text()[-3000:]
        deadline = time.monotonic() + 30
        while (left := [p for p, s in started.items() if alive(p, s)]) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert left == [], f"left running: {left}"
        assert not (self.cwd / ".data" / "stack.json").exists()


    def stop_if_running(self) -> None:
        """After a failed test: the same orderly stop, by PID."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def started() -> Iterator[list[Up]]:
    """Every `up` a test starts, stopped at its end whatever happened."""
    ups: list[Up] = []
    yield ups
    for up in ups:
        up.stop_if_running()


def descendants(pid: int) -> Iterator[tuple[int, str | None]]:
    """Every process below `pid`, with its start time."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        yield child, process_started(child)
        todo += children.get(child, [])


def alive(pid: int, started: str | None) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return stat[0] != "Z" and stat[19] == started


def truth_sessions(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [row for row in rows if "transaction_id" in row]


def session_id(cwd: Path, station: str, transaction: str) -> str:
    found = json.loads(ok(cwd, "session", "--station", station, transaction, "--json").stdout)
    record = found[0] if isinstance(found, list) else found
    return str(record["session_id"])


def wait_for_sessions(cwd: Path, expected: int, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    landed = -1
    while time.monotonic() < deadline:
        rows = json.loads(ok(cwd, "report", "summary", "--json").stdout)
        landed = sum(int(row["sessions"]) for row in rows)
        if landed >= expected:
            assert landed == expected
            return
        time.sleep(2)
    raise AssertionError(f"{landed} of {expected} sessions in ClickHouse")


def write_next_day(source: Path, target: Path, renamed: tuple[str, ...],
                   times: tuple[str, ...]) -> None:
    """`source`'s lines a day later, the `renamed` ids prefixed with "D2-"."""
    lines = []
    for line in source.read_text().splitlines():
        row = json.loads(line)
        for name in renamed:
            if row.get(name) is not None:
                row[name] = f"D2-{row[name]}"
        for name in times:
            if row.get(name) is not None:
                row[name] += 86_400_000
        lines.append(json.dumps(row))
    target.write_text("\n".join(lines) + "\n")


def dead_letters(cwd: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ok(cwd, "dead-letters", "--json").stdout.splitlines()]


def test_up_then_a_second_terminal_then_ctrl_c_then_up_again(tmp_path: Path,
                                                             started: list[Up]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"{'event_id': 'E1'}\n\x1b[2J\x00\x01\x02\x03\x04\n")
    first = Up(tmp_path, "up-1.log", started)
    assert first.stack["namespace"] == "chargewatch-r1"
    twice = terminal(tmp_path, "up")
    assert twice.returncode == 2 and "a stack is already running here" in twice.stderr
    day1, events1 = tmp_path / "day1.jsonl", tmp_path / "events1.jsonl"
    one_per_message = tmp_path / "simulator.yaml"  # as replay publishes: see day 2
    one_per_message.write_text("simulator:\n  events_per_message: 1\n")
    said = ok(tmp_path, "--config", str(one_per_message), "simulate", "--stations", "6",
              "--hours", "4", "--seed", "3", "--truth", str(day1), "--events", str(events1)).stderr
    assert "using the stack `chargewatch up` runs" in said
    replayed = ok(tmp_path, "replay", str(bad))
    assert "2 dead-lettered" in replayed.stderr
    producer = Producer({"bootstrap.servers": first.stack["bootstrap_servers"]})
    producer.produce("chargewatch-r1.meter-events", key=b"CS-X", value=b"\xc3\x01 not avro")
    assert producer.flush(30) == 0
    del producer  # its client would otherwise outlive the broker
    wait_for_sessions(tmp_path, len(truth_sessions(day1)))
    ids = {session_id(tmp_path, s["station_id"], s["transaction_id"])
           for s in truth_sessions(day1)}
    some = sorted(ids)[0]
    assert json.loads(ok(tmp_path, "session", some, "--json").stdout)["session_id"] == some
    assert json.loads(ok(tmp_path, "cdr", some, "--json").stdout)[0]["id"]
    ok(tmp_path, "anomalies", "--from-beginning", "--json")
    letters = dead_letters(tmp_path)
    by_source = {letter["source"]: letter for letter in letters}
    assert by_source[f"{bad} line 1"]["error"] == (
        "line 1: bad JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)")
    assert by_source[f"{bad} line 2"]["original_preview"] == \
        "1b 5b 32 4a 00 01 02 03 04 (binary, 9 bytes)"
    undecodable = [letter for letter in letters if letter["stage"] == "processor"]
    assert len(undecodable) == 1 and undecodable[0]["original_preview"].startswith("c3 01 20")
    first.interrupt()

    second = Up(tmp_path, "up-2.log", started)
    assert second.stack["namespace"] == "chargewatch-r2"
    assert "meter-events messages from earlier runs produced back" in second.log.read_text()
    assert json.loads(ok(tmp_path, "session", some, "--json").stdout)["session_id"] == some
    # Day 2: day 1's events a day later, under new transaction and event ids, replayed one
    # per message on the same stations: into an empty broker they would take day 1's exact
    # positions, and so its session IDs. After the kept events, their IDs are new ones.
    day2, events2 = tmp_path / "day2.jsonl", tmp_path / "events2.jsonl"
    write_next_day(events1, events2, ("event_id", "transaction_id"),
                   ("event_time_ms", "receive_time_ms"))
    write_next_day(day1, day2, ("transaction_id",), ("start_ms", "end_ms"))
    ok(tmp_path, "replay", str(events2))
    wait_for_sessions(tmp_path, len(truth_sessions(day1)) + len(truth_sessions(day2)))
    new_ids = {session_id(tmp_path, s["station_id"], s["transaction_id"])
               for s in truth_sessions(day2)}
    assert not new_ids & ids, "a restarted stack gave new sessions the IDs of stored ones"
    assert len(new_ids) == len(truth_sessions(day2))
    processor_letters = [x for x in dead_letters(tmp_path) if x["stage"] == "processor"]
    assert len(processor_letters) == 1, "a letter repeated by the second run is shown once"
    follower = subprocess.Popen([sys.executable, "-m", "chargewatch", "dead-letters", "-f",
                                 "--json", "--since", "1h"], cwd=tmp_path, env=CLEAN_ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(8)  # it reads the history, then waits at the topic's end
        late = tmp_path / "late.jsonl"
        late.write_text("not json\n")
        ok(tmp_path, "replay", str(late))
        new = ""
        while f"{late} line 1" not in new:
            line = follower.stdout.readline() if follower.stdout else ""
            assert line, f"the follower ended: {follower.stderr.read() if follower.stderr else ''}"
            new = json.loads(line)["source"]
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(30)
    second.interrupt()


def test_after_the_demo_lookups_find_its_data_and_up_carries_on(tmp_path: Path,
                                                                started: list[Up]) -> None:
    demo = ok(tmp_path, "demo", "--stations", "4", "--hours", "3", timeout=600)
    shown = re.search(r"try `chargewatch session (\S+)`", demo.stderr)
    assert shown, demo.stderr[-3000:]
    printed = shown[1]
    record = json.loads(ok(tmp_path, "session", printed, "--json").stdout)
    assert record["session_id"] == printed
    assert json.loads(ok(tmp_path, "cdr", printed, "--json").stdout)[0]["session_id"] == printed
    summary = json.loads(ok(tmp_path, "report", "summary", "--json").stdout)
    assert sum(int(row["sessions"]) for row in summary) > 0
    up = Up(tmp_path, "up.log", started)  # carries on from the demo's data, through its sink
    assert json.loads(ok(tmp_path, "session", printed, "--json").stdout)["session_id"] == printed
    up.interrupt()
    again = terminal(tmp_path, "demo", "--stations", "4", "--hours", "3")
    assert again.returncode == 2 and "kept by `chargewatch up`" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1, again.stderr
