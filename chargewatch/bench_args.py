"""The arguments of `chargewatch bench pipeline` (kept apart so the CLI imports no bench code)."""

from __future__ import annotations

import argparse


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=200_000, help="events per workload")
    parser.add_argument("--run-dir", default=".data/bench")
    parser.add_argument("--gateway-only", action="store_true",
                        help="only gateway-shaped traffic, partition window off and on")
