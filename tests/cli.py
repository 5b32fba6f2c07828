"""Run `chargewatch` as a user would: a command to completion, or the sink as a process."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`chargewatch ARGS` with `env` over this process's environment, in `cwd`."""
    return subprocess.run([sys.executable, "-m", "chargewatch", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd)


@contextlib.contextmanager
def running_sink(env: dict[str, str], web_port: int, rows: int,
                 timeout_s: float = 60) -> Iterator[None]:
    """`chargewatch sink`, once its `/health` counts `rows` written; stopped (SIGTERM) after."""
    sink = subprocess.Popen([sys.executable, "-m", "chargewatch", "sink"],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert time.monotonic() < deadline, f"the sink never wrote {rows} rows"
            assert sink.poll() is None, f"the sink exited with {sink.returncode}"
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{web_port}/health"
                with urllib.request.urlopen(url, timeout=2) as response:
                    if json.load(response)["rows_written"] >= rows:
                        break
            time.sleep(0.3)
        yield
    finally:
        sink.terminate()
        sink.wait(timeout=30)
