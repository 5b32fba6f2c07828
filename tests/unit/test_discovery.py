"""A second terminal finds the running stack through `.data/stack.json`, and only a live one:
a file left by a stack that died, or whose PID now belongs to another program, is ignored."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from chargewatch.discovery import (
    RunningStack,
    absolute_chdb,
    process_started,
    read_stack,
    remove_stack,
    use_running_stack,
    write_stack,
)
from infra.settings import load_settings

pytestmark = pytest.mark.unit

STACK = RunningStack(pid=os.getpid(), pid_started=process_started(os.getpid()),
                     bootstrap_servers="127.0.0.1:40123", namespace="chargewatch-r3",
                     partitions=4, processor_port=6166, sink_port=6167,
                     chdb_folder="/tmp/x/.data/chdb", database="chargewatch", broker_pid=None,
                     worker_pid=None)


def test_a_live_stack_is_found(tmp_path: Path) -> None:
    path = tmp_path / "stack.json"
    write_stack(STACK, path)
    assert read_stack(path) == (STACK, None)
    remove_stack(path)
    assert read_stack(path) == (None, None)


def test_a_stack_that_died_is_ignored_with_a_note(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    path = tmp_path / "stack.json"
    write_stack(replace(STACK, pid=gone.pid, pid_started=None), path)
    stack, note = read_stack(path)
    assert stack is None
    assert note is not None and f"pid {gone.pid}" in note and "not running" in note


def test_a_reused_pid_is_not_the_stack(tmp_path: Path) -> None:
    path = tmp_path / "stack.json"
    write_stack(replace(STACK, pid_started="1"), path)  # our PID, another start time
    assert read_stack(path)[0] is None


def test_a_broken_file_is_ignored_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "stack.json"
    path.write_text("{not json")
    stack, note = read_stack(path)
    assert stack is None and note is not None and "not a stack file" in note


def test_commands_without_bootstrap_servers_use_the_stack(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    path = tmp_path / "stack.json"
    write_stack(STACK, path)
    found = use_running_stack(load_settings(), path)
    assert (found.kafka.bootstrap_servers, found.kafka.namespace) == ("127.0.0.1:40123",
                                                                      "chargewatch-r3")
    assert (found.processor.web_port, found.sink.web_port) == (6166, 6167)
    said = capsys.readouterr().err
    assert "127.0.0.1:40123" in said and len(said.strip().splitlines()) == 1
    configured = load_settings(kafka={"bootstrap_servers": "kafka:9092"})
    assert use_running_stack(configured, path) is configured


def test_the_default_chdb_folder_becomes_absolute(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLICKHOUSE_URL", raising=False)
    settings = absolute_chdb(load_settings())
    assert settings.clickhouse.url.get_secret_value() == f"chdb://{tmp_path}/.data/chdb"
    server = load_settings(clickhouse={"url": "http://u:p@ch:8123"})
    assert absolute_chdb(server) is server
