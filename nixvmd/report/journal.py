"""Logging setup: plain stderr lines, or priority-prefixed or structured entries for journald."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import IO, Any

# sd-daemon(3) priorities, which journald strips from the front of each stderr line.
LOG_CRIT = 2
LOG_ERR = 3
LOG_WARNING = 4
LOG_INFO = 6
LOG_DEBUG = 7

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(name)s: %(message)s"


def syslog_priority(levelno: int) -> int:
    """The syslog priority journald should record for a logging level."""
    if levelno <= logging.DEBUG:
        return LOG_DEBUG
    if levelno <= logging.INFO:
        return LOG_INFO
    if levelno <= logging.WARNING:
        return LOG_WARNING
    if levelno <= logging.ERROR:
        return LOG_ERR
    return LOG_CRIT


def prefix_priority(text: str, levelno: int) -> str:
    """Prefix every line of `text` with `<N>`, so journald keeps the priority of each one.

    A traceback spans many lines and journald makes an entry of each, so each needs the prefix.
    """
    prefix = f"<{syslog_priority(levelno)}>"
    lines = text.splitlines() or [""]
    return "\n".join(prefix + line for line in lines)


def run_fields(run_id: str, kernel_version: str | None = None, outcome: str | None = None) -> dict[str, str]:
    """The `extra` for a log call about one run: `log.info("...", extra=run_fields(...))`.

    Under journald with systemd-python these become the RUN_ID, KERNEL_VERSION and OUTCOME
    fields, so `journalctl --user -u nixvmd RUN_ID=...` finds one run's lines.
    """
    fields = {"RUN_ID": run_id}
    if kernel_version:
        fields["KERNEL_VERSION"] = kernel_version
    if outcome:
        fields["OUTCOME"] = outcome
    return fields


def stderr_is_journal(environ: Mapping[str, str], stream: IO[Any]) -> bool:
    """True when `stream` is the journal stream systemd connected (JOURNAL_STREAM=dev:ino).

    Checking the device and inode, not just that the variable exists, matters: a child that
    inherited JOURNAL_STREAM but whose stderr was redirected is not talking to journald.
    """
    value = environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        stat = os.fstat(stream.fileno())
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError):
        return False


class PriorityFormatter(logging.Formatter):
    """Formats records as sd-daemon(3) lines: `<N>` priority prefix, no timestamp."""

    def format(self, record: logging.LogRecord) -> str:
        return prefix_priority(super().format(record), record.levelno)


def setup_logging(
    verbose: bool,
    environ: Mapping[str, str] | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Configure the root logger once for the daemon and return the handler it installed.

    Outside journald: timestamped plain lines on stderr. When stderr is the journal stream:
    `<N>`-prefixed lines without timestamps (journald adds its own), or, when systemd-python
    is installed, structured entries carrying RUN_ID, KERNEL_VERSION and OUTCOME fields.
    """
    environ = os.environ if environ is None else environ
    stream = sys.stderr if stream is None else stream
    handler: logging.Handler | None = None
    if stderr_is_journal(environ, stream):
        handler = _native_journal_handler()
        if handler is None:
            handler = logging.StreamHandler(stream)
            handler.setFormatter(PriorityFormatter(JOURNAL_FORMAT))
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    return handler


def _native_journal_handler() -> logging.Handler | None:
    try:
        from systemd import journal
    except ImportError:
        return None
    # JournalHandler sends the record's attributes as fields; journald keeps the valid
    # (upper-case) names, which is how run_fields' RUN_ID etc. reach the journal.
    handler: logging.Handler = journal.JournalHandler(SYSLOG_IDENTIFIER="nixvmd")
    handler.setFormatter(logging.Formatter(JOURNAL_FORMAT))
    return handler
