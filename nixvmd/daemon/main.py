"""`nixvmd`: the daemon's command line (foreground; systemd or the shell backgrounds it)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from nixvmd import __version__
from nixvmd.config.load import find_config_file, load_config
from nixvmd.config.schema import Config
from nixvmd.daemon.commands import handlers, sessions
from nixvmd.daemon.control import ControlServer
from nixvmd.daemon.loop import Daemon
from nixvmd.errors import ConfigError, NixvmdError
from nixvmd.plugins import load_plugins
from nixvmd.report.journal import setup_logging
from nixvmd.report.sdnotify import SystemdNotifier, strip_notify_environment
from nixvmd.results.record import Outcome, RunRecord

log = logging.getLogger("nixvmd")

EXIT_PASSED, EXIT_FAILED, EXIT_BROKEN = 0, 1, 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="nixvmd",
        description="Watch a kernel tree, boot each new kernel in QEMU, run the suite, report.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="config file (default: ./nixvmd.toml, "
        "else $XDG_CONFIG_HOME/nixvmd/config.toml, else built-in defaults)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="one build/boot/test cycle with the current inputs, then exit "
        "(0 passed, 1 the kernel failed, 2 nixvmd could not do its job)",
    )
    parser.add_argument("--json", action="store_true", help="with --once: print the run record as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"nixvmd {__version__}")
    return parser.parse_args(argv)


def exit_code(record: RunRecord) -> int:
    """--once's exit status for a finished run."""
    if record.outcome is Outcome.PASSED:
        return EXIT_PASSED
    if record.outcome in (Outcome.FAILED, Outcome.CRASHED, Outcome.TIMEOUT):
        return EXIT_FAILED
    return EXIT_BROKEN


def describe(record: RunRecord) -> str:
    s = record.summary()
    counts = f"{s['passed']} passed, {s['failed']} failed, {s['skipped']} skipped"
    lines = [f"run {record.id}: {s['outcome']} on {record.build} ({counts}, {s['duration_s']:.1f}s)"]
    if record.reason:
        lines.append(f"  reason: {record.reason}")
    if record.regressions:
        lines.append(f"  regressions: {', '.join(record.regressions)}")
    if record.fixes:
        lines.append(f"  fixed: {', '.join(record.fixes)}")
    if record.known_failures:
        lines.append(f"  known failures: {', '.join(record.known_failures)}")
    return "\n".join(lines)


async def run_once(config: Config, config_path: Path | None, as_json: bool) -> int:
    daemon = Daemon(config, config_path)
    try:
        daemon.check_kernel(announce=False, unless_tested=False)  # --once runs whatever was tested
        if daemon.kernel is None:
            print(f"nixvmd: {daemon.kernel_error or daemon.space_error}", file=sys.stderr)
            return EXIT_BROKEN
        if not daemon.backend.is_current():
            # A failed build raises ImageBuildError: main() prints it and exits 2.
            await daemon.backend.build(lambda line: log.info("nix: %s", line))
        record = await daemon.start_run()
        await daemon.report(record, config)
    finally:
        daemon.close()
        await daemon.reporter.close()
    print(json.dumps(record.to_json(), indent=2) if as_json else describe(record))
    print(f"run directory: {daemon.store.path(record.id)}", file=sys.stderr)
    return exit_code(record)


async def serve(config: Config, config_path: Path | None) -> int:
    notifier = SystemdNotifier(os.environ)
    strip_notify_environment(os.environ)
    daemon = Daemon(config, config_path, notifier=notifier)
    control = ControlServer(config.daemon.socket, handlers(daemon), daemon.events, sessions(daemon))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, daemon.stopped.set)
    loop.add_signal_handler(signal.SIGINT, daemon.stopped.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: daemon.request(daemon.reload_config()))
    try:
        await daemon.serve(control)
    finally:
        daemon.close()
        notifier.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    # nixvmd reports QMP failures itself, in words; the library's own errors are noise.
    logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)
    config_path = args.config or find_config_file()
    try:
        plugins = load_plugins(os.environ)
    except NixvmdError as exc:
        print(f"nixvmd: {exc}", file=sys.stderr)
        return EXIT_BROKEN
    if plugins:
        log.info("plugins: %s", ", ".join(plugins))
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"nixvmd: bad config:\n{exc}", file=sys.stderr)
        return EXIT_BROKEN
    try:
        if args.once:
            return asyncio.run(run_once(config, config_path, args.json))
        return asyncio.run(serve(config, config_path))
    except NixvmdError as exc:
        print(f"nixvmd: {exc}", file=sys.stderr)
        return EXIT_BROKEN
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
