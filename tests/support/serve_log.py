"""Reading where a ``secure-export serve`` child listens, from the JSON lines it logs to stderr."""

from __future__ import annotations

import json
import subprocess
import threading


class ServeLog:
    """The JSON log lines a ``secure-export serve`` child writes to stderr, read on a thread to the end.

    ``serve --port 0`` binds a port the OS picks and logs ``{"event": "listening", "url": ...}``
    once it has started (``ops_listening`` for the ops port): :meth:`url` waits for that line, so a
    test never guesses a free port. Reading to the end keeps the child from blocking on a full pipe.
    """

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None, "start the child with stderr=subprocess.PIPE"
        self._stderr = process.stderr
        self._lines: list[str] = []
        self._urls: dict[str, str] = {}
        self._changed = threading.Condition()
        self._ended = False
        threading.Thread(target=self._read, name="serve-log", daemon=True).start()

    def _read(self) -> None:
        for raw in self._stderr:
            line = raw.decode(errors="replace")
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            with self._changed:
                self._lines.append(line)
                if isinstance(record, dict) and isinstance(record.get("url"), str):
                    self._urls.setdefault(str(record.get("event")), record["url"])
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def url(self, event: str = "listening", timeout: float = 30.0) -> str:
        """The URL logged with ``event``; ``AssertionError`` with the log if it does not come."""
        with self._changed:
            self._changed.wait_for(lambda: event in self._urls or self._ended, timeout)
            found = self._urls.get(event)
        assert found, f"serve did not log {event!r}:\n{self.text()[-2000:]}"
        return found

    def text(self) -> str:
        """Everything logged so far."""
        with self._changed:
            return "".join(self._lines)
