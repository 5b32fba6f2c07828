"""Micro-benchmark of `SessionStitcher.apply` over a realistic log: the simulator's fleet,
every event through `stitch_log` as one agent would apply it (best of several runs).

    python -m tests.perf_stitch [--stations 60] [--hours 24] [--runs 7]
                                [--baseline CHECKOUT --rounds 5]

It prints events/s of the best run. With `--baseline`, another checkout (e.g. a `git
archive` of main unpacked in /tmp) is measured too, in child processes alternating with
this one round by round (the machine is shared), and the ratio of the best figures is
printed: the same run, the same log, the same machine state.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from charging.pricing import SimpleTariff
from charging.session_ids import IdTemplate
from charging.stitcher import StitcherConfig, stitch_log
from producers.simulator import FleetConfig, simulate
from schemas.records import EventPosition, MeterEvent


def fleet_log(stations: int, hours: float, partitions: int = 3
              ) -> list[tuple[MeterEvent, EventPosition]]:
    """The simulator's messages as positioned events, one partition per station hash."""
    offsets = [0] * partitions
    log: list[tuple[MeterEvent, EventPosition]] = []
    simulation = simulate(FleetConfig(seed=11, stations=stations,
                                      duration_s=int(hours * 3600)))
    for station, events in simulation.messages():
        partition = sum(station.encode()) % partitions
        log.extend((e, EventPosition(partition, offsets[partition], i))
                   for i, e in enumerate(events))
        offsets[partition] += 1
    return log


def best_rate(stations: int, hours: float, runs: int) -> tuple[int, int, float]:
    """(events, sessions, best events/s) of `runs` runs of `stitch_log` over the fleet log."""
    log = fleet_log(stations, hours)
    config = StitcherConfig(3, IdTemplate.parse("EV-{num:09d}"), SimpleTariff())
    best = float("inf")
    sessions = 0
    for _ in range(runs):
        started = time.perf_counter()
        outcome = stitch_log(log, config)
        best = min(best, time.perf_counter() - started)
        sessions = len(outcome.completed)
    return len(log), sessions, len(log) / best


def _child(checkout: Path | None, args: argparse.Namespace) -> float:
    env = dict(os.environ)
    if checkout is not None:
        env["PYTHONPATH"] = str(checkout)
    done = subprocess.run(
        [sys.executable, __file__, "--stations", str(args.stations), "--hours", str(args.hours),
         "--runs", str(args.runs), "--rate-only"],
        env=env, cwd=checkout or Path(__file__).resolve().parents[1], capture_output=True,
        text=True, check=True)
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stations", type=int, default=60)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rate_only:
        print(best_rate(args.stations, args.hours, args.runs)[2])
        return
    if args.baseline is None:
        events, sessions, rate = best_rate(args.stations, args.hours, args.runs)
        print(f"{events} events, {sessions} sessions: best of {args.runs} {rate:,.0f} events/s")
        return
    ours, theirs = 0.0, 0.0
    for _ in range(args.rounds):
        theirs = max(theirs, _child(args.baseline.resolve(), args))
        ours = max(ours, _child(None, args))
    print(f"baseline {theirs:,.0f} events/s, this checkout {ours:,.0f} events/s: "
          f"ratio {ours / theirs:.3f} (best of {args.rounds} rounds x {args.runs} runs)")


if __name__ == "__main__":
    main()
