"""Recent daemon log lines for `nixvmctl logs`, each also published as a `log` event."""

from __future__ import annotations

import collections
import logging

from nixvmd.report.events import EventBus


class LogBuffer(logging.Handler):
    """Keeps recent daemon log lines for `nixvmctl logs` and publishes them as events."""

    def __init__(self, events: EventBus, size: int = 500) -> None:
        super().__init__(logging.INFO)
        self.events = events
        self.lines: collections.deque[str] = collections.deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        self.lines.append(line)
        self.events.publish("log", line=line, level=record.levelname.lower())
