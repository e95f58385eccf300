"""An HTTP server on 127.0.0.1 that answers with scripted raw bytes, for client tests.

Each request gets the next scripted answer: raw bytes (the connection stays open), a
``(raw, close)`` pair (close after it when ``close``), or ``None`` / nothing scripted (hang up
without answering). ``answers`` may also be a function of the raw request. Every request's head
and body are recorded in ``requests``; ``connections`` counts accepted connections. (TLS and
client certificates are tested against the local API server, tests/kube_emulator.)
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

Answer = bytes | tuple[bytes, bool] | None


class ScriptedServer:
    def __init__(
        self,
        answers: list[Answer] | Callable[[bytes], Answer] | None = None,
    ) -> None:
        self.answers: list[Answer] | Callable[[bytes], Answer] = [] if answers is None else answers
        self.requests: list[bytes] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        with conn, reader:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + reader.read(length)
                with self._lock:
                    self.requests.append(request)
                    if callable(self.answers):
                        answer = self.answers(request)
                    else:
                        answer = self.answers.pop(0) if self.answers else None
                if answer is None:
                    return
                raw, close = answer if isinstance(answer, tuple) else (answer, False)
                conn.sendall(raw)
                if close:
                    return

    def close(self) -> None:
        self._sock.close()
