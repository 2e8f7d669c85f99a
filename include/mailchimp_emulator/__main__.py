"""Command line: `python -m mailchimp_emulator --port 8025 [--config FILE] [...]` / `mailchimp-emulator`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from aiohttp import web

from .app import Emulator, create_app
from .config import ConfigError, Settings, load_config_file, parse_audience_flag, with_overrides
from .faults import BATCH_STATES, FaultError, Faults
from .pace import PRESETS, Pace, PaceError
from .redact import AccessLogger, configure_logging
from .store import StateLocked

log = logging.getLogger("mailchimp_emulator")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mailchimp-emulator", description="Local Mailchimp Marketing API v3 server."
    )
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8025)")
    p.add_argument("--state", type=Path, help="SQLite state file (default ./var/mailchimp-emulator.db)")
    p.add_argument("--config", type=Path, help="YAML or JSON file with audiences, keys, tokens, faults")
    p.add_argument("--dc", help="data center the keys must name (default us6)")
    p.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="accepted API key <32 hex>-<dc> (repeatable; replaces the default)",
    )
    p.add_argument(
        "--oauth-token",
        action="append",
        dest="oauth_tokens",
        metavar="TOKEN",
        help="accepted OAuth token (repeatable; replaces the default)",
    )
    p.add_argument(
        "--audience",
        action="append",
        dest="audiences",
        metavar="SPEC",
        help="audience 'id=ID,name=NAME,double_optin=BOOL' with default merge fields (repeatable)",
    )
    p.add_argument(
        "--public-url", help="base URL clients use to reach this server (default from Host header)"
    )
    p.add_argument("--batch-pace", type=float, help="seconds between batch states (default 0)")
    p.add_argument("--archive-ttl", type=float, help="seconds a results URL stays valid (default 600)")
    p.add_argument("--max-connections", type=int, help="simultaneous /3.0 requests allowed (default 10)")
    p.add_argument("--max-pending-batches", type=int, help="pending batches allowed (default 500)")
    p.add_argument("--max-body-mb", type=int, help="largest request body in MiB (default 64)")
    p.add_argument(
        "--allow-placeholder-domains",
        action="store_true",
        default=None,
        help="accept addresses at example.org, .test etc. (Mailchimp refuses them; off by default)",
    )
    p.add_argument("--log-level", default="info", help="debug, info, warning (default info)")
    pace = p.add_argument_group("processing pace (README: Processing pace)")
    pace.add_argument("--pace", choices=sorted(PRESETS), help="preset (default off: as fast as possible)")
    pace.add_argument("--ops-per-minute", type=float, help="operations a running batch applies per minute")
    pace.add_argument("--parallel-batches", type=int, help="batches run at once (default 1)")
    pace.add_argument("--finish-delay", type=float, help="seconds between the last operation and finished")
    faults = p.add_argument_group("faults (same fields as PUT /_emulator/faults)")
    faults.add_argument("--error-rate", type=float)
    faults.add_argument("--throttle-next", type=int)
    faults.add_argument("--latency-ms", type=int)
    faults.add_argument("--latency-spike-rate", type=float)
    faults.add_argument("--latency-spike-ms", type=int)
    faults.add_argument("--drop-rate", type=float)
    faults.add_argument("--bare-status", type=int)
    faults.add_argument("--bare-next", type=int)
    faults.add_argument("--stuck-in", choices=BATCH_STATES[:-1])
    faults.add_argument("--empty-url-next", type=int)
    faults.add_argument("--corrupt-archive", action="store_true", default=None)
    faults.add_argument("--lose-batch-answer-next", type=int)
    faults.add_argument("--fault-seed", type=int, dest="seed")
    return p


_FAULT_FLAGS = (
    "error_rate",
    "throttle_next",
    "latency_ms",
    "latency_spike_rate",
    "latency_spike_ms",
    "drop_rate",
    "bare_status",
    "bare_next",
    "stuck_in",
    "empty_url_next",
    "corrupt_archive",
    "lose_batch_answer_next",
    "seed",
)


def settings_from_args(args: argparse.Namespace) -> Settings:
    base = Settings(**load_config_file(args.config)) if args.config else Settings()
    fault_flags = {k: getattr(args, k) for k in _FAULT_FLAGS if getattr(args, k) is not None}
    pace_flags = {
        key: value
        for key, value in (
            ("preset", args.pace),
            ("operations_per_minute", args.ops_per_minute),
            ("parallel_batches", args.parallel_batches),
            ("finish_delay", args.finish_delay),
        )
        if value is not None
    }
    return with_overrides(
        base,
        host=args.host,
        port=args.port,
        state_path=args.state,
        dc=args.dc,
        api_keys=tuple(args.api_keys) if args.api_keys else None,
        oauth_tokens=tuple(args.oauth_tokens) if args.oauth_tokens else None,
        audiences=tuple(parse_audience_flag(a) for a in args.audiences) if args.audiences else None,
        public_url=args.public_url,
        batch_pace=args.batch_pace,
        archive_ttl=args.archive_ttl,
        max_connections=args.max_connections,
        max_pending_batches=args.max_pending_batches,
        max_body_bytes=args.max_body_mb * 1024 * 1024 if args.max_body_mb else None,
        allow_placeholder_domains=args.allow_placeholder_domains,
        pace=Pace.from_config(pace_flags, base.pace) if pace_flags else None,
        faults=Faults.from_dict(fault_flags, base.faults) if fault_flags else None,
    )


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        settings = settings_from_args(args)
    except (ConfigError, FaultError, PaceError, OSError) as exc:
        print(f"mailchimp-emulator: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        emulator = Emulator(settings)
    except StateLocked as exc:
        print(f"mailchimp-emulator: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    log.info(
        "Mailchimp emulator on %s/3.0 (dc %s, audiences %s, state %s, pace %s)",
        settings.base_url,
        settings.dc,
        ", ".join(a.id for a in settings.audiences),
        settings.state_path,
        settings.pace,
    )
    web.run_app(
        create_app(emulator),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log_class=AccessLogger,
        access_log=logging.getLogger("mailchimp_emulator.access"),
        shutdown_timeout=5,
    )


if __name__ == "__main__":
    main()
