"""The benches' own arithmetic: gateway replicas from a measured rate, the scale bench's
worker counts and its "the group is whole" check, how long the latency reader waits, the
CPU of a process tree."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from chargewatch.bench import until_quiet
from chargewatch.bench_gateway import GatewayRun, ThreadCpu, _sizing
from chargewatch.bench_gateway_load import Tally
from chargewatch.bench_scale import _whole, worker_counts
from chargewatch.proc_cpu import cpu_seconds, tree_cpu_seconds

pytestmark = pytest.mark.unit


def test_replicas_plan_half_the_measured_rate_plus_a_spare() -> None:
    # 1,000 msgs/s measured over 10 s, with 5 CPU-seconds of Python: a ceiling of 2,000/s.
    run = GatewayRun(Tally(readings=10_000), 10.0, ThreadCpu(3.0, 1.0, 2.0), Tally(), [])
    ((_, replicas, note),) = _sizing(run)
    # 100,000 connectors / 30 s * 1.2 = 4,000 msgs/s; at 500/s a replica: 8, + 1 spare.
    assert replicas == "9"
    assert "4,000 msgs/s" in note
    assert "5 at ≤ 50% of the ceiling of 2,000/s" in note  # 4 + 1 spare


def test_worker_counts_parse_and_refuse_nonsense() -> None:
    assert worker_counts("1,2,4") == [1, 2, 4]
    for bad in ("1,two", "0,1", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            worker_counts(bad)


def test_the_group_is_whole_when_every_worker_owns_partitions_and_each_once() -> None:
    def workers(*owns: list[int]) -> list:
        return [SimpleNamespace(owns=o) for o in owns]

    assert _whole(workers([0, 1], [2, 3]), 4)
    assert not _whole(workers([0, 1, 2, 3], []), 4)  # one has not joined yet
    assert not _whole(workers([0, 1, 2], [2, 3]), 4)  # mid-rebalance: 2 in both
    assert not _whole(workers([0, 1], [2]), 4)  # partition 3 unowned


class _Clock:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_latency_reader_waits_for_updates_however_late_they_come() -> None:
    # Updates keep arriving for 7 s after the load stopped (a pipeline behind by seconds):
    # all of them are timed, then 3 quiet seconds end the wait.
    clock = _Clock()
    until_quiet(lambda: int(min(clock.now, 7.0) * 100), quiet_s=3, at_most_s=120,
                clock=clock, sleep=clock.sleep)
    assert 10.0 <= clock.now <= 10.5


def test_the_latency_reader_gives_up_at_its_bound() -> None:
    clock = _Clock()
    until_quiet(lambda: int(clock.now * 100), quiet_s=3, at_most_s=60, clock=clock,
                sleep=clock.sleep)
    assert 60.0 <= clock.now <= 60.5


def test_the_cpu_of_a_process_tree_counts_its_children() -> None:
    # A child that burns 0.3 s of CPU (whatever the wall time), then waits to be ended.
    burn = ("import sys, time\nwhile time.process_time() < 0.3: pass\n"
            "print('done', flush=True)\nsys.stdin.read()")
    with subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None and child.stdout.readline() == "done\n"
        mine = cpu_seconds(os.getpid())
        assert tree_cpu_seconds(os.getpid()) - mine >= 0.25
        assert tree_cpu_seconds(child.pid) >= 0.25
        child.communicate("")
