"""Settings: each declared once, read once from the environment, then passed down.

Every setting is one field of ``Settings`` made by ``setting()``: its variable, its
default, how it is parsed and what it means. Parsing, the README's settings table
and ``bookd --help`` all come from those declarations (``describe()``), so they
cannot drift apart. This module is the only place in bookd that reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bookd.core.errors import ConfigError

LOCAL_CREDENTIALS = ("test", "test")
"""What LocalStack accepts; used only when the endpoint is on this machine's loopback."""

Parser = Callable[[str], Any]


def setting(env: str, default: Any, parse: Parser, help: str, *, shown: str | None = None) -> Any:
    """Declare a field of Settings: its variable, default, parser and meaning, in one place."""
    meta = {"env": env, "parse": parse, "help": help, "shown": shown}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


# --- parsers: each raises ValueError with what is wrong ---------------------------


def integer(low: int, high: int) -> Parser:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("is not a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"is outside {low}..{high}")
        return value

    return parse


def number(low: float, high: float, *, or_low: bool = False) -> Parser:
    """A finite number above ``low`` (or equal to it, with ``or_low``) and at most ``high``."""

    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("is not a number") from None
        # float() takes "nan" and "inf"; neither is a usable timeout.
        above = value >= low if or_low else value > low
        if not math.isfinite(value) or not above or value > high:
            least = "at least" if or_low else "above"
            raise ValueError(f"must be a number {least} {low:g} and at most {high:g}")
        return value

    return parse


def text(raw: str) -> str:
    return raw.strip()


def optional(raw: str) -> str | None:
    return raw.strip() or None


def fifo_queue(raw: str) -> str:
    name = raw.strip()
    if not name.endswith(".fifo"):
        raise ValueError("must end in '.fifo': bookd relies on FIFO ordering")
    return name


def account_id(raw: str) -> str | None:
    value = raw.strip()
    if value and not (len(value) == 12 and value.isdigit()):
        raise ValueError("must be a 12-digit AWS account id")
    return value or None


def choice(*allowed: str, upper: bool = False) -> Parser:
    def parse(raw: str) -> str:
        value = raw.strip().upper() if upper else raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"is not one of {', '.join(allowed)}")
        return value

    return parse


def path(raw: str) -> Path:
    return Path(raw.strip()).absolute()


def pem_file(raw: str) -> Path:
    """A file of certificates to trust, which must be there when bookd starts: a path
    that names none would fail every TLS call later, as an outage."""
    found = path(raw)
    if not found.is_file():
        raise ValueError("names no file; give the path of a PEM file of CA certificates")
    return found


def buckets(raw: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        genre, sep, bucket = pair.partition("=")
        if not sep or not genre.strip() or not bucket.strip():
            raise ValueError(f"entry {pair!r} is not 'genre=bucket' (like 'scifi=scifi')")
        result[genre.strip().lower()] = bucket.strip()
    if not result:
        raise ValueError("is empty; give at least one 'genre=bucket' pair")
    return result


_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def bucket_names(raw: str) -> tuple[str, ...]:
    """Comma-separated S3 bucket names, each once, in the order given."""
    names = tuple(dict.fromkeys(filter(None, (n.strip() for n in raw.split(",")))))
    for name in names:
        if not _BUCKET_NAME.fullmatch(name):
            raise ValueError(f"entry {name!r} is not an S3 bucket name (3-63 of a-z 0-9 . -)")
    return names


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("is not true or false")


def endpoint(raw: str) -> str | None:
    value = raw.strip().rstrip("/")
    if value and urlsplit(value).scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL, or empty for AWS")
    return value or None


def exporter_name(raw: str) -> str | None:
    """OTEL_TRACES_EXPORTER: the one exporter bookd's listener sends its spans to, or None."""
    value = raw.strip().lower()
    if value not in ("none", "otlp", "console"):
        raise ValueError("is not one of otlp, console, none (bookd takes one exporter)")
    return None if value == "none" else value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Settings:
    """Everything bookd can be told, with defaults that work against the host LocalStack."""

    # --- where -------------------------------------------------------------------
    endpoint_url: str | None = setting(
        "BOOKD_ENDPOINT_URL",
        "http://127.0.0.1:4566",
        endpoint,
        "where S3 and SQS calls go (LocalStack); empty for real AWS",
    )
    region: str = setting(
        "AWS_REGION", "us-east-1", text, "region (AWS_DEFAULT_REGION is read too)"
    )
    access_key_id: str | None = setting(
        "AWS_ACCESS_KEY_ID",
        None,
        optional,
        "credentials; unset: boto3's own chain (roles, profiles), "
        "or test/test when the endpoint is on loopback",
        shown="unset",
    )
    secret_access_key: str | None = setting(
        "AWS_SECRET_ACCESS_KEY", None, optional, "the secret of AWS_ACCESS_KEY_ID", shown="unset"
    )
    session_token: str | None = setting(
        "AWS_SESSION_TOKEN", None, optional, "session token, for temporary credentials"
    )
    ca_bundle: Path | None = setting(
        "AWS_CA_BUNDLE",
        None,
        lambda raw: pem_file(raw) if raw.strip() else None,
        "certificates (a PEM file) that S3 and SQS endpoints over https are checked "
        "against, instead of the system's: a private CA, or LocalStack's own",
        shown="unset",
    )
    input_queue: str = setting("BOOKD_INPUT_QUEUE", "InputQueue.fifo", fifo_queue, "queue of books")
    output_queue: str = setting(
        "BOOKD_OUTPUT_QUEUE", "OutputQueue.fifo", fifo_queue, "where stored files are announced"
    )
    dead_letter_queue: str = setting(
        "BOOKD_DEAD_LETTER_QUEUE",
        "InputQueue-dlq.fifo",
        fifo_queue,
        "dead letters, each with its reason",
    )
    buckets: Mapping[str, str] = setting(
        "BOOKD_BUCKETS",
        {"scifi": "scifi", "romance": "romance"},
        buckets,
        "genre-to-bucket map",
        shown="scifi=scifi,romance=romance",
    )
    bucket_owner: str | None = setting(
        "BOOKD_BUCKET_OWNER",
        None,
        account_id,
        "AWS account that must own the buckets (sent as ExpectedBucketOwner)",
    )
    # --- books sent as S3 pointers (the SQS extended client) ----------------------
    payload_buckets: tuple[str, ...] = setting(
        "BOOKD_PAYLOAD_BUCKETS",
        (),
        bucket_names,
        "buckets whose objects a message may point at (S3 pointers of AWS's SQS extended "
        "client), comma-separated; a pointer to any other bucket is dead-lettered "
        "(pointer-refused) unread",
        shown="none",
    )
    payload_max_bytes: int = setting(
        "BOOKD_PAYLOAD_MAX_BYTES",
        16 * 1024 * 1024,
        integer(1, 2 * 1024**3),
        "largest payload read for a pointer, in bytes; a larger one is dead-lettered "
        "(payload-too-large) unread. 16 MiB holds any novel's full text several times over; "
        "a payload stays in memory until its book is stored, at most one per group, so "
        "BOOKD_CONCURRENCY times this bounds them (16 x 16 MiB: half the 512 MiB of "
        "deploy/k8s)",
        shown="16777216 (16 MiB)",
    )
    payload_delete: bool = setting(
        "BOOKD_PAYLOAD_DELETE",
        False,
        boolean,
        "true: delete a pointer's payload once its book is stored and announced and its "
        "message deleted (the extended client's convention: whoever deletes the message "
        "deletes its payload); false: the payload is left to the producer or a lifecycle rule",
        shown="false",
    )
    # --- retries -----------------------------------------------------------------
    max_attempts: int = setting(
        "BOOKD_MAX_ATTEMPTS",
        5,
        integer(1, 1000),
        "failed tries of one message, while S3 and SQS answer, before it is dead-lettered "
        "(with BOOKD_RETRY_FOR); tries during an outage do not count",
    )
    retry_for: float = setting(
        "BOOKD_RETRY_FOR",
        300.0,
        number(0, 39600, or_low=True),
        "seconds a message keeps being retried, from its first failure, before it is "
        "dead-lettered; both this and BOOKD_MAX_ATTEMPTS must be used up",
    )
    max_receive_count: int = setting(
        "BOOKD_MAX_RECEIVE_COUNT",
        100,
        integer(2, 1000),
        "deliveries after which SQS's redrive (and the listener, with reason "
        "too-many-deliveries) moves a message to the dead-letter queue: a backstop for "
        "messages that crash the listener, not the retry budget",
    )
    visibility_timeout: int = setting(
        "BOOKD_VISIBILITY_TIMEOUT",
        30,
        integer(5, 43200),
        "seconds a received message stays hidden; heartbeats extend it for long jobs",
    )
    wait_time: int = setting(
        "BOOKD_WAIT_TIME",
        10,
        integer(1, 20),
        "seconds of one long poll (1-20); a stop does not wait it out",
    )
    # --- the listener ------------------------------------------------------------
    concurrency: int = setting(
        "BOOKD_CONCURRENCY",
        16,
        integer(1, 256),
        "threads working on different groups at once, and uploads in flight at once",
    )
    receivers: int = setting(
        "BOOKD_RECEIVERS",
        16,
        integer(1, 64),
        "receive loops in flight at once; a FIFO receive returns one group's messages, "
        "so this is how many groups move at once",
    )
    group_mode: str = setting(
        "BOOKD_GROUP_MODE",
        "parallel",
        choice("parallel", "strict"),
        "parallel: a received group's books of different titles are uploaded at once, "
        "announced in input order; strict: one book stored and announced at a time",
    )
    listener_nice: int = setting(
        "BOOKD_LISTENER_NICE",
        10,
        integer(0, 19),
        "CPU niceness added to the listener, so the API wins when the CPU is short",
    )
    # --- the web app -------------------------------------------------------------
    check_timeout: float = setting(
        "BOOKD_CHECK_TIMEOUT",
        2.0,
        number(0, 60),
        "seconds for each outbound check of /health, /readyz and GET /",
    )
    control_token: str | None = setting(
        "BOOKD_CONTROL_TOKEN",
        None,
        optional,
        "bearer token for POST / and DELETE /; unset: only loopback callers may use them",
        shown="unset",
    )
    control_token_file: Path | None = setting(
        "BOOKD_CONTROL_TOKEN_FILE",
        None,
        lambda raw: path(raw) if raw.strip() else None,
        "file holding the control token (a mounted secret); instead of BOOKD_CONTROL_TOKEN",
        shown="unset",
    )
    bind: str = setting(
        "BOOKD_BIND",
        "127.0.0.1:8000",
        text,
        "Gunicorn's address",
        shown="127.0.0.1:8000 (0.0.0.0:8000 in the image)",
    )
    workers: int = setting("BOOKD_WORKERS", 2, integer(1, 64), "Gunicorn workers")
    threads: int = setting(
        "BOOKD_THREADS",
        4,
        integer(1, 64),
        "request threads per worker, so one slow check never holds up the rest",
    )
    max_requests: int = setting(
        "BOOKD_MAX_REQUESTS",
        0,
        integer(0, 10_000_000),
        "requests before a worker is replaced (0: never)",
    )
    timeout: int = setting(
        "BOOKD_TIMEOUT", 30, integer(1, 3600), "seconds Gunicorn waits for a silent worker"
    )
    graceful_timeout: int = setting(
        "BOOKD_GRACEFUL_TIMEOUT",
        25,
        integer(1, 3600),
        "seconds workers get to finish on stop; below supervisord's stopwaitsecs (40)",
    )
    # --- files and logs ----------------------------------------------------------
    state_dir: Path = setting(
        "BOOKD_STATE_DIR",
        Path("var/run"),
        path,
        "lock, listener status and Prometheus multiprocess files",
        shown="var/run",
    )
    replay_group: str = setting(
        "BOOKD_REPLAY_GROUP",
        "bookd-replay",
        text,
        "FIFO group of the announcements `bookd replay` sends again, apart from the live ones",
    )
    prometheus_multiproc_dir: Path | None = setting(
        "PROMETHEUS_MULTIPROC_DIR",
        None,
        lambda raw: path(raw) if raw.strip() else None,
        "prometheus-client's own variable: where every process writes its metrics, summed "
        "at each scrape; gunicorn_conf.py sets it to BOOKD_STATE_DIR/metrics for the whole "
        "tree (leave it unset)",
        shown="unset",
    )
    log_level: str = setting(
        "BOOKD_LOG_LEVEL", "INFO", choice(*LOG_LEVELS, upper=True), "log level"
    )
    aws_call_log: Path | None = setting(
        "BOOKD_AWS_CALL_LOG",
        None,
        lambda raw: path(raw) if raw.strip() else None,
        "file to which every process appends each S3 and SQS call it makes, as JSON lines: "
        "what IAM permissions bookd uses (the tests check deploy/iam-policy.json with it)",
        shown="unset",
    )
    log_format: str = setting(
        "BOOKD_LOG_FORMAT",
        "text",
        choice("text", "json"),
        "text: readable lines; json: one JSON object per line (access log included)",
    )
    traces_exporter: str | None = setting(
        "OTEL_TRACES_EXPORTER",
        None,
        exporter_name,
        "OpenTelemetry's own variable: otlp or console turns tracing on in the listener (a "
        "span per message, its S3 and SQS calls as children, the context carried on in "
        "traceparent); unset or none: off, OpenTelemetry not even imported. The SDK reads "
        "its other OTEL_* variables itself (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME...)",
        shown="unset (off)",
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every declared variable; ConfigError naming the variable if one is bad."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = f.metadata["env"]
            raw = env.get(name)
            if raw is None and name == "AWS_REGION":
                raw = env.get("AWS_DEFAULT_REGION")
            if raw is None or (not raw.strip() and name != "BOOKD_ENDPOINT_URL"):
                continue  # unset, or set empty: the default
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                raise ConfigError(f"{name}={raw!r} {exc}") from None
        return cls(**values)._resolved()

    def _resolved(self) -> Settings:
        """Rules across settings: local credentials, the token file."""
        changes: dict[str, Any] = {}
        if not self.state_dir.is_absolute():
            changes["state_dir"] = self.state_dir.absolute()
        if not (self.access_key_id and self.secret_access_key) and is_loopback(self.endpoint_url):
            # An emulator on this machine takes any credentials; anywhere else gets
            # boto3's own chain, so no made-up key is ever sent to a real service.
            changes["access_key_id"], changes["secret_access_key"] = LOCAL_CREDENTIALS
        if self.control_token_file is not None:
            if self.control_token:
                raise ConfigError("set BOOKD_CONTROL_TOKEN or BOOKD_CONTROL_TOKEN_FILE, not both")
            try:
                token = self.control_token_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"BOOKD_CONTROL_TOKEN_FILE={str(self.control_token_file)!r} "
                    f"cannot be read: {exc.strerror}"
                ) from None
            if not token:
                raise ConfigError(
                    f"BOOKD_CONTROL_TOKEN_FILE={str(self.control_token_file)!r} is empty"
                )
            changes["control_token"] = token
        return dataclasses.replace(self, **changes) if changes else self

    def to_env(self) -> dict[str, str]:
        """The environment that makes another process read these settings."""
        env: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "control_token" and self.control_token_file is not None:
                continue  # read from the file, as this process did
            if value is None:
                if f.name == "endpoint_url":
                    env[f.metadata["env"]] = ""  # empty means AWS
                continue
            if isinstance(value, Mapping):
                value = ",".join(f"{k}={v}" for k, v in value.items())
            elif isinstance(value, tuple):
                value = ",".join(value)
            elif isinstance(value, bool):
                value = "true" if value else "false"
            env[f.metadata["env"]] = str(value)
        return env

    def replace(self, **changes: object) -> Settings:
        """A copy with some settings changed; tests use it for unique queue and bucket names."""
        return dataclasses.replace(self, **changes)

    @property
    def metrics_dir(self) -> Path:
        """prometheus-client's multiprocess directory, wiped at each Gunicorn start."""
        return self.state_dir / "metrics"

    @property
    def over_tls(self) -> bool:
        """Whether S3 and SQS calls go over https: to AWS (no endpoint), or to an https one."""
        return not (self.endpoint_url or "https:").startswith("http:")

    @property
    def all_buckets(self) -> list[str]:
        """Each bucket once, in a stable order."""
        return sorted(set(self.buckets.values()))

    @property
    def listener_connections(self) -> int:
        """Connections each of the listener's clients keeps: one per thread that calls.

        The group threads and the upload threads (BOOKD_CONCURRENCY each), the receive
        loops, the heartbeat, and one spare.
        """
        return 2 * self.concurrency + self.receivers + 2


def is_loopback(url: str | None) -> bool:
    """Whether ``url`` points at this machine (127.0.0.0/8, ::1 or localhost)."""
    if not url:
        return False
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def describe() -> list[tuple[str, str, str]]:
    """(variable, default as shown, meaning) of every setting, in declaration order."""
    rows = []
    for f in dataclasses.fields(Settings):
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = meta["shown"] or ("unset" if default is None else _show(default))
        rows.append((meta["env"], shown, meta["help"]))
    return rows


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def markdown_table() -> str:
    """The README's settings table."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{env}` | `{shown}` | {meaning} |" for env, shown, meaning in describe()]
    return "\n".join(lines)
