"""The `chargewatch` command line.

Exit codes: 0 success, 1 a failure at run time (message on stderr), 2 invalid configuration
or usage.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console

from chargewatch.anomalies_cli import add_anomalies_arguments, cmd_anomalies
from chargewatch.bench_args import add_pipeline_arguments
from chargewatch.bench_gateway import add_bench_gateway_arguments
from chargewatch.bench_reports import add_bench_arguments
from chargewatch.bench_reports import cmd_bench as cmd_bench_reports
from chargewatch.bench_scale import add_bench_scale_arguments
from chargewatch.cdr_cli import add_cdr_arguments, cmd_cdr
from chargewatch.dead_letters_cli import add_dead_letters_arguments, cmd_dead_letters
from chargewatch.discovery import (
    absolute_chdb,
    check_chdb_free,
    require_kafka,
    use_running_stack,
)
from chargewatch.gateway_cli import add_gateway_arguments, cmd_gateway
from chargewatch.logs import configure as configure_logging
from chargewatch.reporting import (
    add_report_arguments,
    add_session_arguments,
    cmd_report,
    cmd_session,
)
from infra.errors import ChargeWatchError, ConfigError, UsageError
from infra.settings import Settings, load_settings

err = Console(stderr=True, soft_wrap=True)


def _fmt(args: argparse.Namespace) -> str:
    if getattr(args, "json", False):
        return "json"
    if getattr(args, "csv", False):
        return "csv"
    return "table"


def _add_format(parser: argparse.ArgumentParser, csv: bool = True) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help="print JSON")
    if csv:
        group.add_argument("--csv", action="store_true", help="print CSV")


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from chargewatch.demo import run_demo

    overrides = {k: v for k, v in {"stations": args.stations, "seed": args.seed,
                                    "duration_h": args.hours}.items() if v is not None}
    sim = settings.simulator.model_copy(update=overrides)
    run_demo(settings.model_copy(update={"simulator": sim}), Path(args.run_dir))
    return 0


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from chargewatch.up import run_up

    return run_up(settings)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from chargewatch.worker import run_worker

    run_worker(settings, require_kafka(settings))
    return 0


def cmd_sink(settings: Settings, args: argparse.Namespace) -> int:
    from chargewatch.sink_service import SinkService

    bootstrap = require_kafka(settings)
    check_chdb_free(settings)
    service = SinkService(settings, bootstrap).start()
    signal.signal(signal.SIGTERM, lambda *_: service.stop_event.set())
    err.print(f"sink running; web endpoint on 127.0.0.1:{service.web_port}")
    try:
        service.wait()
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()
    return 0


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from chargewatch.publishing import simulate_to

    overrides = {k: v for k, v in {"stations": args.stations, "seed": args.seed,
                                    "duration_h": args.hours}.items() if v is not None}
    sim = settings.simulator.model_copy(update=overrides)
    bootstrap = None if args.no_publish else require_kafka(settings)
    simulate_to(settings.model_copy(update={"simulator": sim}), bootstrap,
                truth_path=Path(args.truth), events_path=Path(args.events) if args.events else None,
                chaos=args.chaos, registry_path=Path(args.registry) if args.registry else None)
    return 0


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from chargewatch.publishing import replay

    stats = replay(settings, require_kafka(settings), Path(args.file))
    return 0 if stats.dead_lettered == 0 or not args.strict else 1


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from chargewatch.bench import cmd_bench as bench_pipeline

    bench_pipeline(settings, args.events, Path(args.run_dir), args.gateway_only)
    return 0


def cmd_config_show(settings: Settings, args: argparse.Namespace) -> int:
    from chargewatch.render import print_rows, to_json

    data = settings.redacted()
    if args.json:
        print(to_json(data))
        return 0
    rows = [(f"{group}.{key}" if isinstance(values, dict) else group,
             str(value) if isinstance(values, dict) else str(values))
            for group, values in data.items()
            for key, value in (values.items() if isinstance(values, dict) else [("", values)])]
    print_rows(["setting", "value"], rows, title="effective configuration")
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from sinks.clickhouse import connect
    from sinks.migrate import migrate

    check_chdb_free(settings)
    applied = migrate(connect(settings.clickhouse.url.get_secret_value()),
                      settings.clickhouse.database, cluster=settings.clickhouse.cluster)
    print("\n".join(applied) if applied else "nothing to apply")
    return 0


def cmd_grant(settings: Settings, args: argparse.Namespace) -> int:
    from sinks.access import Account, apply_access, bi_role, sink_role
    from sinks.clickhouse import connect

    check_chdb_free(settings)
    ch = settings.clickhouse
    accounts = [Account(user, password.get_secret_value(), role(ch.database))
                for user, password, role in ((ch.bi_user, ch.bi_password, bi_role),
                                             (ch.sink_user, ch.sink_password, sink_role))
                if user and password]
    done = apply_access(connect(ch.url.get_secret_value()), ch.database, accounts, ch.cluster)
    print("\n".join(done))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chargewatch", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="YAML, JSON or TOML settings file")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[Settings, argparse.Namespace], int],
            help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p

    def add_fleet(p: argparse.ArgumentParser) -> None:
        p.add_argument("--stations", type=int, help="number of stations (default 200)")
        p.add_argument("--seed", type=int, help="random seed (default 7)")
        p.add_argument("--hours", type=float, help="simulated hours (default 24)")

    p = add("demo", cmd_demo, "run the whole pipeline on the embedded stack and report")
    add_fleet(p)
    p.add_argument("--run-dir", default=".data/demo", help="logs and embedded data of the run")
    add("up", cmd_up, "run the local stack (embedded broker, processor worker, sink) in the "
                      "foreground until Ctrl-C; other commands in this folder use it")
    add("worker", cmd_worker, "run a processor (Faust) worker")
    add("sink", cmd_sink, "run the ClickHouse sink worker (and its web endpoint)")
    p = add("simulate", cmd_simulate, "publish a simulated fleet's meter events")
    add_fleet(p)
    p.add_argument("--truth", default="truth.jsonl", help="where to write the ground truth")
    p.add_argument("--events", help="also write the events as JSON Lines (replayable)")
    p.add_argument("--no-publish", action="store_true", help="only write files")
    p.add_argument("--registry", metavar="FILE", help="also write the fleet's station "
                   "registry (rated power, model, firmware) for processor.stations_file")
    p.add_argument("--chaos", type=float, default=0.0, metavar="RATE",
                   help="inject every messy case into RATE (0..1) of the sessions; the truth "
                        "file then holds the expected outcome and anomalies")
    p = add("replay", cmd_replay, "publish meter events from a JSON Lines file")
    p.add_argument("file")
    p.add_argument("--strict", action="store_true", help="exit 1 if any line was dead-lettered")
    p = add("session", cmd_session,
            "print one session, completed or open, by ID (or --station and transaction id)")
    add_session_arguments(p)
    p = add("cdr", cmd_cdr, "print a session's OCPI CDRs (credits included) as a table or JSON")
    add_cdr_arguments(p)
    p = add("report", cmd_report, "print a named report (table, CSV, JSON, chart)")
    add_report_arguments(p)
    p = add("config", cmd_config_show, "show the effective configuration (secrets masked)")
    p.add_argument("action", choices=["show"])
    p.add_argument("--json", action="store_true")
    add("migrate", cmd_migrate, "apply ClickHouse migrations")
    add("grant", cmd_grant, "create the BI (read-only) and sink (insert-only) roles and users")
    add_anomalies_arguments(add("anomalies", cmd_anomalies, "tail anomalies for on-call"))
    add_dead_letters_arguments(add("dead-letters", cmd_dead_letters,
                                   "what the pipeline could not use: stage, source, reason, "
                                   "the original bytes"))
    add_gateway_arguments(add("gateway", cmd_gateway, "run the OCPP gateway chargers connect to"))
    _add_benches(add("bench", cmd_bench, "measure throughput, latency and report speed"))
    return parser


def _add_benches(bench: argparse.ArgumentParser) -> None:
    benches = bench.add_subparsers(dest="what", required=True)
    pipeline = benches.add_parser("pipeline", help="events/s and latency on the embedded stack")
    add_pipeline_arguments(pipeline)
    reports = benches.add_parser("reports", help="report and lookup latency on synthetic data")
    reports.set_defaults(fn=cmd_bench_reports)
    add_bench_arguments(reports)
    add_bench_gateway_arguments(benches.add_parser(
        "gateway", help="OCPP messages/s and answer latency of one gateway process"))
    add_bench_scale_arguments(benches.add_parser(
        "scale", help="processor events/s with 1, 2, 4... workers on one topic"))


USES_RUNNING_STACK = frozenset({"simulate", "replay", "session", "cdr", "report", "anomalies",
                                "dead-letters", "gateway"})
"""Commands that, given no KAFKA_BOOTSTRAP_SERVERS, use the stack `chargewatch up` runs."""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        settings = absolute_chdb(settings)
        if args.command in USES_RUNNING_STACK and not getattr(args, "no_publish", False):
            settings = use_running_stack(settings)
        return int(args.fn(settings, args))
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        return 2
    except UsageError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2
    except ChargeWatchError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
