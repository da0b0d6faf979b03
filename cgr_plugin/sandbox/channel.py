"""The parent's end of the worker protocol: JSON lines on the worker's message pipe, plus the
program's stray output on the sandbox's stdout and stderr.

Everything that comes out of a sandbox is valid UTF-8 by the time it leaves this module: JSON
lets a program send lone surrogates (``"\\ud800"``), which no UTF-8 writer (the journal,
stdout, lm-eval's sample files) can store; every string of a message (keys included, at any
depth) has them replaced by U+FFFD, and raw output is decoded with replacement.
"""

from __future__ import annotations

import json
import os
import re
import select
import time
from typing import Any

__all__ = ["MAX_MESSAGE", "STDERR_BYTES", "Channel", "valid_text"]

MAX_MESSAGE = 1 << 20  # one protocol line; longer is a protocol violation
STDERR_BYTES = 4000  # of the sandbox's stderr kept (the rest is read and dropped)


_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(value: Any) -> Any:
    """``value`` (parsed JSON) with every lone surrogate in its strings replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [valid_text(each) for each in value]
    if isinstance(value, dict):
        return {valid_text(key): valid_text(each) for key, each in value.items()}
    return value


class Channel:
    """The worker's messages and the program's stray output, all read in the calling thread:
    messages are read only when the next one is wanted (a flood waits in the pipe), output
    whenever it arrives (up to a cap; the rest is read and dropped)."""

    def __init__(self, messages: int, stdout: int, stderr: int, output_chars: int) -> None:
        self.messages, self.buffer, self.ended = messages, bytearray(), False
        self.sinks: dict[int, tuple[list[bytes], int]] = {stdout: ([], output_chars),
                                                          stderr: ([], STDERR_BYTES)}
        self.sizes = dict.fromkeys(self.sinks, 0)
        self.poller = select.poll()
        for fd in (messages, stdout, stderr):
            self.poller.register(fd, select.POLLIN)
        self.open = {messages, stdout, stderr}

    def next(self, timeout: float) -> dict[str, Any] | None:
        """The next message; None once the worker has closed its end; TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            message = self._parse()
            if message is not None or self.ended:
                return message
            wait = deadline - time.monotonic()
            if wait <= 0:
                raise TimeoutError
            for fd, _ in self.poller.poll(wait * 1000 + 1):
                self._read(fd)

    def _parse(self) -> dict[str, Any] | None:
        end = self.buffer.find(b"\n", 0, MAX_MESSAGE + 1)
        if end < 0:
            if len(self.buffer) > MAX_MESSAGE or (self.buffer and self.messages not in self.open):
                self._close(self.messages)
                self.buffer.clear()
                self.ended = True
                return {"type": "protocol_error", "message": "message too long"}
            if self.messages not in self.open:
                self.ended = True
            return None
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        try:
            message = valid_text(json.loads(line))
            if not isinstance(message, dict):
                raise ValueError("not an object")
        except Exception as err:  # deep nesting raises RecursionError, not ValueError
            message = {"type": "protocol_error", "message": f"bad message: {type(err).__name__}"}
        return message

    def _read(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            self._close(fd)
        elif fd == self.messages:
            self.buffer += chunk
        else:
            sink, cap = self.sinks[fd]
            if self.sizes[fd] < cap:
                sink.append(chunk[: cap - self.sizes[fd]])
            self.sizes[fd] += len(chunk)

    def _close(self, fd: int) -> None:
        if fd in self.open:
            self.open.discard(fd)
            self.poller.unregister(fd)

    def drain(self, timeout: float) -> None:
        """Read the output that is left, until its writers are gone or ``timeout``."""
        self._close(self.messages)
        deadline = time.monotonic() + timeout
        while self.open and (wait := deadline - time.monotonic()) > 0:
            for fd, _ in self.poller.poll(wait * 1000 + 1):
                self._read(fd)

    def output(self, fd: int) -> str:
        return b"".join(self.sinks[fd][0]).decode(errors="replace")
