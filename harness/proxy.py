"""A loopback TCP proxy in front of LocalStack: latency, and faults injected by service.

The benchmark uses it to stand in for a real network (20 ms added to every request);
the tests and the fault suite use it to take S3 or SQS away, slow them down, make
them refuse one kind of call, or take LocalStack away altogether, without touching
the real server. It can also stand in for a service that takes only so many requests
at once: S3 answering ``503 SlowDown`` beyond N uploads in flight, or (the ceiling
that N allows) holding the rest until one is done. It listens on 127.0.0.1 and
forwards to loopback only.

It works on TCP bursts, not a full HTTP parser: the first burst after an answer
starts a request (clients send the headers in one burst), which is enough to tell
S3 from SQS (SQS's JSON protocol names its operation in ``X-Amz-Target``) and to
pick the operation. Only where a fault needs it does it read lengths: a request it
answers with an error (``SlowDown`` or another) is read whole first (by its
Content-Length, or to its last chunk), as S3 reads it, so that a client still
sending its body (the CRT's uploads send it after the headers) reads the answer
rather than a reset.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass

HEALTH = "health"
"""The pseudo-service of LocalStack's own /_localstack endpoints; never faulted by service."""

LIMITED = ("slowdown", "queue")
"""The fault actions that let ``limit`` requests through at once."""

SLOWDOWN = (503, "SlowDown", "Please reduce your request rate.")
"""S3's answer to a prefix that gets more requests than it can take: status, code, message."""

QUEUE_WAIT_LIMIT = 60.0
"""Seconds a request waits for a place under "queue" before it is answered SlowDown."""

READ_REST_TIMEOUT = 5.0
"""Seconds to wait for the rest of a request that is to be refused."""


@dataclass(frozen=True)
class Request:
    """What the proxy can tell of a request from its first burst."""

    service: str
    """"s3", "sqs" or HEALTH."""
    operation: str
    """SQS's operation name; for S3 the method and a rough name (PUT object: PutObject)."""
    head: bytes

    @classmethod
    def parse(cls, head: bytes) -> Request:
        first, _, rest = head.partition(b"\r\n")
        parts = first.split(b" ")
        method = parts[0].decode("latin-1", "replace") if parts else ""
        target = parts[1].decode("latin-1", "replace") if len(parts) > 1 else ""
        for line in rest.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"x-amz-target" and b"AmazonSQS." in value:
                return cls("sqs", value.strip().split(b".", 1)[1].decode(), head)
        if target.startswith("/_localstack"):
            return cls(HEALTH, target, head)
        return cls("s3", _s3_operation(method, target), head)


def _s3_operation(method: str, target: str) -> str:
    path, _, query = target.partition("?")
    has_key = path.strip("/").count("/") >= 1
    if "versions" in query.split("&"):
        return "ListObjectVersions"
    if "versioning" in query:
        return "GetBucketVersioning" if method == "GET" else "PutBucketVersioning"
    names = {
        ("PUT", True): "PutObject",
        ("GET", True): "GetObject",
        ("HEAD", True): "HeadObject",
        ("HEAD", False): "HeadBucket",
        ("DELETE", True): "DeleteObject",
    }
    return names.get((method, has_key), f"{method} {'object' if has_key else 'bucket'}")


@dataclass(frozen=True)
class Fault:
    """What to do to matching requests.

    ``action``: "unavailable" (answer 503, as a service in trouble does), "error"
    (answer ``status`` with AWS error ``code``), "reset" (drop the connection),
    "stall" (hold the request ``seconds``, then forward it), "slowdown" (answer S3's
    ``503 SlowDown`` to each request beyond ``limit`` in flight at once, as S3 does to
    a prefix that gets more than it can take) or "queue" (hold each request beyond
    ``limit`` in flight until one is done, refusing none: the most a client can get
    from a service that takes ``limit`` at once). A request is in flight from its
    first burst until the first burst of its answer other than "100 Continue" (an
    upload's answer is its headers). For these two, ``seconds`` is added to every
    request let through: the time the busy service takes for it, so ``limit / seconds``
    bounds the rate.
    """

    action: str
    service: str | None = None
    """Only this service's requests ("s3", "sqs"); None: both."""
    operation: str | None = None
    match: bytes | None = None
    """Only requests whose first burst holds these bytes (a key in the path, say)."""
    seconds: float = 0.0
    status: int = 503
    code: str = "ServiceUnavailable"
    limit: int = 0
    """For "slowdown" and "queue": requests let through at once."""

    @property
    def limited(self) -> bool:
        return self.action in LIMITED

    def applies(self, request: Request) -> bool:
        if request.service == HEALTH:
            return False
        if self.service is not None and request.service != self.service:
            return False
        if self.operation is not None and request.operation != self.operation:
            return False
        return self.match is None or self.match in request.head


class Windows:
    """The requests in flight under each limited fault (its window), and who waits."""

    def __init__(self) -> None:
        self._in_flight: Counter[int] = Counter()
        self._freed = threading.Condition()

    def enter(self, fault: Fault, *, wait: bool, until: float) -> bool:
        """Take a place in ``fault``'s window; False if it is full (and ``wait`` is False,
        or it stayed full until the monotonic time ``until``)."""
        with self._freed:
            while self._in_flight[id(fault)] >= fault.limit:
                left = until - time.monotonic()
                if not wait or left <= 0:
                    return False
                self._freed.wait(min(left, 1.0))
            self._in_flight[id(fault)] += 1
            return True

    def leave(self, fault: Fault) -> None:
        with self._freed:
            self._in_flight[id(fault)] -= 1
            self._freed.notify()


class Proxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``delay`` seconds before each request.

    ``inject(fault)`` starts a fault, ``heal()`` ends them all; ``seen`` counts the
    requests by (service, operation, what was done).
    """

    def __init__(self, target: tuple[str, int], *, delay: float = 0.0, port: int = 0) -> None:
        if target[0] not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the proxy forwards to loopback addresses only")
        self.target = target
        self.delay = delay
        self.port = port
        self.seen: Counter[tuple[str, str, str]] = Counter()
        self._faults: list[Fault] = []
        self._windows = Windows()
        self._server: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def heal(self) -> None:
        with self._lock:
            self._faults.clear()

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
            held: list[Fault] = []  # the limited fault whose window the request in flight is in
            for src, dst, outbound in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pipe, args=(src, dst, outbound, answered, held), daemon=True
                ).start()

    def _fault_for(self, request: Request) -> Fault | None:
        with self._lock:
            fault = next((f for f in self._faults if f.applies(request)), None)
            if fault is None or not fault.limited:  # counted once its fate is known
                self.seen[
                    (request.service, request.operation, fault.action if fault else "sent")
                ] += 1
        return fault

    def _count(self, request: Request, what: str) -> None:
        with self._lock:
            self.seen[(request.service, request.operation, what)] += 1

    def _admit(self, fault: Fault, request: Request) -> bool:
        """Whether a request under a limited fault goes on (it then holds a place)."""
        queued = fault.action == "queue"
        if self._windows.enter(fault, wait=queued, until=time.monotonic() + QUEUE_WAIT_LIMIT):
            self._count(request, "admitted")
            return True
        self._count(request, "slowdown" if not queued else "queue-timeout")
        return False

    def _pipe(
        self,
        src: socket.socket,
        dst: socket.socket,
        outbound: bool,
        answered: threading.Event,
        held: list[Fault],
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
                if not outbound:
                    # The body that follows "100 Continue" waits a round trip, as on a
                    # real network; but the request keeps its place in a window.
                    answered.set()
                    if not data.startswith(b"HTTP/1.1 100 "):
                        self._leave(held)
                elif answered.is_set():
                    answered.clear()
                    request = Request.parse(data)
                    fault = self._fault_for(request)
                    if fault is not None and fault.limited:
                        if not self._admit(fault, request):
                            _read_rest(src, data)
                            self._refuse(src, fault, request)
                            break
                        held.append(fault)
                    elif fault is not None and fault.action != "stall":
                        if fault.action != "reset":
                            _read_rest(src, data)
                        self._refuse(src, fault, request)
                        break
                    pause = self.delay + (fault.seconds if fault is not None else 0.0)
                    if pause:
                        time.sleep(pause)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._leave(held)
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)
            src.close()

    def _leave(self, held: list[Fault]) -> None:
        """The request that held a place in a window is answered (or gone): free it."""
        with contextlib.suppress(IndexError):
            self._windows.leave(held.pop())

    @staticmethod
    def _refuse(client: socket.socket, fault: Fault, request: Request) -> None:
        if fault.action == "reset":
            # Linger 0: close with a TCP reset, as a crashed server or a dropped network does.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return
        message = "injected by bookd's fault proxy"
        if fault.action == "unavailable":
            status, code = 503, "ServiceUnavailable"
        elif fault.limited:
            status, code, message = SLOWDOWN
        else:
            status, code = fault.status, fault.code
        if request.service == "sqs":
            body = json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": message})
            headers = (
                "Content-Type: application/x-amz-json-1.0\r\n"
                f"x-amzn-query-error: {code};{'Receiver' if status >= 500 else 'Sender'}\r\n"
            )
        else:
            body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
            headers = "Content-Type: application/xml\r\n"
        if request.operation.startswith("Head"):
            body = ""  # HEAD answers carry no body; the status says it all
        payload = body.encode()
        client.sendall(
            (
                f"HTTP/1.1 {status} {code}\r\n{headers}Content-Length: {len(payload)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            + payload
        )


def _read_rest(client: socket.socket, first: bytes) -> None:
    """Read the rest of the request whose first burst is ``first``, so that the answer
    reaches a client that is still sending (closing on unread bytes resets it)."""
    head, sep, body = first.partition(b"\r\n\r\n")
    if not sep:
        return
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
    }
    if headers.get(b"expect", b"").lower() == b"100-continue":
        return  # the client sends no body before "100 Continue", and gets none
    length = int(headers.get(b"content-length", b"0") or 0)
    chunked = b"chunked" in headers.get(b"transfer-encoding", b"")
    client.settimeout(READ_REST_TIMEOUT)
    try:
        while not (_last_chunk(body) if chunked else len(body) >= length):
            more = client.recv(65536)
            if not more:
                return
            body += more
    except OSError:
        return
    finally:
        with contextlib.suppress(OSError):
            client.settimeout(None)


def _last_chunk(body: bytes) -> bool:
    """Whether a chunked body has come to its last (empty) chunk and trailers' end."""
    return (body.startswith(b"0\r\n") or b"\r\n0\r\n" in body) and body.endswith(b"\r\n\r\n")
