"""A loopback TCP proxy that can add latency to each request, or refuse connections.

The benchmark puts it in front of LocalStack to stand in for a real network (20 ms
added to every request); the end-to-end tests use it to take LocalStack away and
bring it back without touching the real server. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class Proxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``delay`` seconds before each request."""

    def __init__(self, target: tuple[str, int], *, delay: float = 0.0, port: int = 0) -> None:
        if target[0] not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the proxy forwards to loopback addresses only")
        self.target = target
        self.delay = delay
        self.port = port
        self._server: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Proxy:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(256)
        self.port = server.getsockname()[1]
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the listening socket and every open connection: callers see refusals."""
        with self._lock:
            server, self._server = self._server, None
            doomed = list(self._sockets)
            self._sockets.clear()
        for sock in [server, *doomed]:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):
                # Forward each burst at once: with Nagle's algorithm a request's second
                # burst would wait for the first one's (delayed) ACK, about 40 ms here.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._server is None:
                    client.close()
                    upstream.close()
                    return
                self._sockets.update((client, upstream))
            # Set while the client's next bytes start a new request: at first, and again
            # whenever the server has answered.
            answered = threading.Event()
            answered.set()
            for src, dst, delayed in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pipe, args=(src, dst, delayed, answered), daemon=True
                ).start()

    def _pipe(
        self, src: socket.socket, dst: socket.socket, delayed: bool, answered: threading.Event
    ) -> None:
        # The delay stands in for the network's round trip, once per request on a
        # keep-alive connection: only the first burst after an answer waits. Clients
        # send headers and body in separate bursts (urllib3 does), and a delay per
        # burst would make one request cost two or three round trips.
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not delayed:
                    answered.set()
                elif self.delay and answered.is_set():
                    answered.clear()
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)
            src.close()
