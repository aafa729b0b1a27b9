"""`nixvmctl`: ask the daemon what is going on, or tell it what to do."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import sys
from pathlib import Path

from nixvmd.config.load import find_config_file, load_config
from nixvmd.ctl import answers, bisect, completion, console, export, gdb, service, ssh, watch
from nixvmd.ctl.client import Client, NoDaemonError, default_socket
from nixvmd.ctl.completion import complete_with
from nixvmd.ctl.format import followed_line, format_status
from nixvmd.ctl.replies import format_reply
from nixvmd.errors import ConfigError, NixvmdError
from nixvmd.image.export import ImageFormat

# Commands that need no daemon.
LOCAL_COMMANDS = ("config", "init", "install-service", "completion", "export")
DEFAULT_TIMEOUT_S = 30.0
DAEMON_LOG_LINES = 50
NO_DAEMON_LOG = (
    "nixvmd is not running, so there is no daemon log to show; nixvmctl logs RUN shows a run's "
    "console (nixvmctl history lists the runs)"
)


def positive_seconds(text: str) -> float:
    """A --timeout value: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    """nixvmctl's command line (shell completion is generated from it)."""
    parser = argparse.ArgumentParser(prog="nixvmctl", description="Control and query nixvmd.")
    parser.add_argument("--socket", type=Path, help="the daemon's control socket")
    parser.add_argument(
        "--config",
        dest="config_file",
        metavar="PATH",
        type=Path,
        help="the config nixvmd runs with (default: ./nixvmd.toml, else "
        "$XDG_CONFIG_HOME/nixvmd/config.toml): its socket, and its state dir when no daemon runs",
    )
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"how long to wait for the daemon's answer (default {DEFAULT_TIMEOUT_S:g})",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("status", help="what the daemon is doing, the kernel, the last result")
    p.add_argument("--json", action="store_true", help="print the status object")
    p = sub.add_parser("watch", help="a live one-screen view: phase, kernel, progress, last failures")
    p.add_argument("--once", action="store_true", help="print one frame and exit")
    p.add_argument("--json", action="store_true", help="JSON snapshots instead of the screen")
    p = sub.add_parser(
        "logs", help="the daemon's log (-f follows it and the live console), or a run's console"
    )
    complete_with(
        p.add_argument("run_id", nargs="?", metavar="RUN", help="a run id: that run's console.log"), "runs"
    )
    p.add_argument("-f", "--follow", action="store_true", help="follow the log and the console")
    p.add_argument(
        "-n", "--lines", type=int, help=f"how many past lines (default: {DAEMON_LOG_LINES}; a run's: all)"
    )
    p.add_argument("--json", action="store_true", help="JSON: the lines, then events as JSON lines")
    p = sub.add_parser("run", help="start a run now with the current kernel")
    tests = p.add_argument(
        "--tests",
        nargs="+",
        metavar="TEST",
        default=[],
        help="only these tests (xfstests names, a KUnit glob, or $NIXVMD_TESTS for commands)",
    )
    complete_with(tests, "tests")
    p.add_argument(
        "--fresh",
        action="store_true",
        help='[distribute] engine = "nix": build again, even when Nix has this run\'s results',
    )
    p.add_argument(
        "--gdb",
        nargs="?",
        const="wait",
        choices=["wait", "nowait"],
        help="QEMU's gdbstub, nokaslr, and the guest held until gdb continues it (=nowait: it runs at once); "
        "nixvmctl gdb prints the command",
    )
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("gdb", help="the gdb command that attaches to the run started with run --gdb")
    p.add_argument(
        "--exec", dest="exec_gdb", action="store_true", help="run gdb instead of printing the command"
    )
    p = sub.add_parser("results", help="one run's tests (default: the latest run)")
    complete_with(p.add_argument("run_id", nargs="?", help="a run id from nixvmctl history"), "runs")
    p.add_argument("--json", action="store_true", help="print the run record")
    p = sub.add_parser("dump", help="a run's vmcores (default: the latest run) and how to open them")
    complete_with(
        p.add_argument("run_id", nargs="?", metavar="RUN", help="a run id from nixvmctl history"), "runs"
    )
    p.add_argument("--json", action="store_true", help="print the dumps as JSON")
    p = sub.add_parser("history", help="one line per run")
    p.add_argument("-n", "--limit", type=int, default=20, help="how many runs")
    p.add_argument("--json", action="store_true", help="print the runs' summaries")
    for name, text in (
        ("pause", "stop reacting to changes (queries still work)"),
        ("resume", "react to changes again (runs once if something changed)"),
        ("stop", "cancel the current run"),
        ("reload", "read the config file again"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--json", action="store_true")
    p = sub.add_parser(
        "console", help="attach this terminal to the running guest's console (Ctrl-] detaches)"
    )
    p.add_argument("--shard", type=int, metavar="N", help="in a run with shards, shard N's guest (default 0)")
    p = sub.add_parser("ssh", help='ssh into the running guest (vm.network = "user"); -- CMD runs CMD there')
    p.add_argument("--shard", type=int, metavar="N", help="in a run with shards, shard N's guest (default 0)")
    p.add_argument("remote", nargs="*", metavar="CMD", help="after --: the command to run in the guest")
    bisect.add_parser(sub)
    p = sub.add_parser("baseline", help="the known failures of the suite: list, accept, remove")
    bsub = p.add_subparsers(dest="baseline_command", metavar="ACTION")
    b = bsub.add_parser("list", help="the known failures, with their kernel conditions")
    b.add_argument("--json", action="store_true")
    b = bsub.add_parser("accept", help="record a run's failures (default: the latest run) as known")
    complete_with(b.add_argument("run_id", nargs="?", metavar="RUN"), "runs")
    b.add_argument("--json", action="store_true")
    b = bsub.add_parser("remove", help="forget known failures (names as baseline list shows them)")
    complete_with(b.add_argument("tests", nargs="+", metavar="TEST"), "baseline")
    b.add_argument("--json", action="store_true")
    p = sub.add_parser("config", help="config file tools")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    c = csub.add_parser("check", help="validate a config file (default: the one nixvmd would use)")
    c.add_argument("file", nargs="?", type=Path)
    p = sub.add_parser("init", help="write a commented nixvmd.toml for the kernel tree here")
    p.add_argument("--nix", action="store_true", help="the nix backend: also write a vm.nix to start from")
    p = sub.add_parser("install-service", help="write the systemd user unit for this nixvmd")
    p.add_argument(
        "--config", type=Path, help="the config the service uses (default: the one nixvmd would use here)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the unit instead of writing it")
    p.add_argument("--force", action="store_true", help="replace a different existing unit")
    export.add_arguments(sub.add_parser("export", help="the current kernel's run in another form"))
    p = sub.add_parser("completion", help="print a shell completion script")
    p.add_argument("shell", choices=["bash", "zsh"])
    # Hidden: what the completion scripts ask for (run ids, test names, baseline entries).
    p = sub.add_parser(completion.COMPLETE)
    p.add_argument("kind", choices=completion.KINDS)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def follow(client: Client, as_json: bool = False) -> int:
    try:
        for event in client.subscribe(["log", "console", "state", "run", "dropped"]):
            line = json.dumps(event) if as_json else followed_line(event)
            if line is not None:
                print(line, flush=True)
    except KeyboardInterrupt:
        return 0
    return 0


def export_jobset(path: Path | None, directory: Path) -> int:
    """nixvmctl export --jobset DIR (nixvmd.distribute.jobset)."""
    from nixvmd.distribute.jobset import write_jobset

    config = load_config(path or find_config_file())
    target, shards = asyncio.run(write_jobset(config, directory))
    print(f"wrote {target}: {shards} shard(s) as derivations (nix-instantiate {directory})")
    return 0


def config_check(path: Path | None) -> int:
    path = path or find_config_file()
    try:
        load_config(path, on_disk=True)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{path or '<built-in defaults>'}: ok")
    return 0


def init_here(nix: bool = False) -> int:
    # Imported here: it pulls in the nix backend (and asyncio), which every `nixvmctl status`
    # would otherwise pay for at start-up.
    from nixvmd.ctl import init

    tree = Path.cwd()
    if not init.is_kernel_tree(tree):
        print(f"nixvmctl: warning: {tree} does not look like a kernel tree (no Kbuild)", file=sys.stderr)
    target, image = init.write_config(tree, nix)
    if nix:
        print(f"wrote {tree / init.VM_NIX_NAME} (your NixOS VM; its settings are at the top)")
    print(f"wrote {target}")
    print(f"kernel image: {image.path} ({image.note})")
    if (options := init.tree_options(tree, image)) is not None:
        for note in init.notes(options):
            print(f"from {options.path}: {note}")
    print("next: nixvmctl config check, then start nixvmd here (or nixvmctl install-service)")
    return 0


def install_service(dry_run: bool, force: bool, config: Path | None = None) -> int:
    config = service.unit_config(config, find_config_file())
    text = service.unit_text(service.unit_template(), service.installed_nixvmd(), config)
    if (warning := service.missing_config_warning(config)) is not None:
        print(f"nixvmctl: warning: {warning}", file=sys.stderr)
    if dry_run:
        print(text, end="")
        return 0
    target = service.user_unit_path()
    service.install(target, text, force=force)
    print(f"wrote {target} (nixvmd --config {config or service.template_default()})")
    print(f"next: {service.NEXT_STEP}")
    return 0


def local_command(args: argparse.Namespace) -> int:
    if args.command == "config":
        return config_check(args.file or args.config_file)
    if args.command == "init":
        return init_here(args.nix)
    if args.command == "install-service":
        return install_service(args.dry_run, args.force, args.config)
    if args.command == "export" and args.format:
        return export.export_format(args.config_file, ImageFormat(args.format), args.output)
    if args.command == "export":
        return export_jobset(args.config_file, args.jobset)
    script = completion.bash_script if args.shell == "bash" else completion.zsh_script
    print(script(build_parser()), end="")
    return 0


def daemon_command(args: argparse.Namespace, socket: Path) -> int:
    cmd = args.command
    as_json = getattr(args, "json", False)
    if cmd == "watch":
        return watch.watch(socket, once=args.once, as_json=as_json)
    if cmd == "ssh":
        return ssh.connect(socket, args.shard, args.remote, args.timeout)
    if cmd == "baseline" and args.baseline_command is None:
        print(answers.BASELINE_USAGE, file=sys.stderr)
        return 2
    if cmd == "logs" and args.run_id and args.follow:
        raise NixvmdError("logs -f follows the daemon's log and live console; leave out RUN, or -f")
    if cmd in answers.COMMANDS and (cmd != "logs" or args.run_id):
        with answers.answers_for(args, socket) as source:
            return answers.answer(args, source)
    try:
        client = Client(socket, timeout=args.timeout)
    except NoDaemonError:
        if cmd == "logs":
            raise NixvmdError(NO_DAEMON_LOG) from None
        raise
    with client:
        if cmd == "bisect":
            return bisect.command(client, args)
        if cmd == "console":
            return console.attach(client, sys.stdin.fileno(), sys.stdout.fileno(), shard=args.shard)
        if cmd == "logs":
            lines = client.call("logs", lines=args.lines or DAEMON_LOG_LINES)["lines"]
            if as_json:
                print(json.dumps({"lines": lines}), flush=True)
            else:
                for line in lines:
                    print(line)
            return follow(client, as_json) if args.follow else 0
        if cmd == "gdb":
            return gdb.gdb(client, exec_it=args.exec_gdb)
        if cmd == "run":
            result = client.call(cmd, tests=args.tests, fresh=args.fresh, gdb=args.gdb)
        else:
            result = client.call(cmd)
        if cmd == "status":
            print(json.dumps(result, indent=2) if as_json else format_status(result))
        elif as_json:
            print(json.dumps(result))
        else:
            print(format_reply(cmd, result))
        return 0


def socket_of(args: argparse.Namespace) -> Path:
    """--socket, else the socket of --config (which must then be readable), else the default."""
    if args.socket is not None:
        return Path(args.socket)
    if args.config_file is not None:
        return load_config(args.config_file).daemon.socket
    return default_socket()


def stdout_gone() -> bool:
    """True when nobody reads our stdout any more (a pipe whose reader exited)."""
    poller = select.poll()
    poller.register(sys.stdout.fileno(), select.POLLOUT)
    return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in poller.poll(0))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == completion.COMPLETE:
        return completion.complete(args.kind, args.config_file)
    try:
        if args.command in LOCAL_COMMANDS:
            return local_command(args)
        return daemon_command(args, socket_of(args))
    except NixvmdError as exc:
        print(f"nixvmctl: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        if stdout_gone():
            # Output piped into head and the like, after the daemon answered: not an error.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        # The client reports the socket's own broken pipes as ControlError; this is a fallback.
        print("nixvmctl: the daemon closed the connection without answering", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"nixvmctl: talking to the daemon failed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
