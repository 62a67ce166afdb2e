"""Sending books to a FIFO queue by hand (``bookd send``, a redrive): in order, never overtaken.

Books come from JSON (one book or an array), JSON Lines or CSV. They go out in as
many batch calls as SQS needs (BATCH_LIMIT entries and MAX_MESSAGE_BYTES each), and
a group stops at its first book not sent: the ones after it would overtake it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bookd.core.errors import AwsFault
from bookd.core.ports import BatchSender, Outgoing, batches, refused_character


def read_books(text: str, fmt: str, name: str) -> list[str]:
    """The message bodies in ``text``: one JSON document, a JSON array, JSON Lines or CSV."""
    if fmt == "auto":
        fmt = _guess_format(text, name)
    if fmt == "jsonl":
        # Each line as it is, byte for byte: it is what will be stored.
        return [line for line in text.splitlines() if line.strip()]
    if fmt == "csv":
        rows = csv.DictReader(io.StringIO(text))
        return [json.dumps({k: v for k, v in row.items() if k}, ensure_ascii=False) for row in rows]
    try:
        data = json.loads(text)
    except ValueError:
        return [text]  # one body, sent as it is: the listener dead-letters it with a reason
    if isinstance(data, list):
        return [json.dumps(item, ensure_ascii=False) for item in data]
    return [text]


def _guess_format(text: str, name: str) -> str:
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".csv", "csv")):
        if name.endswith(suffix):
            return fmt
    if name.endswith(".json"):
        return "json"
    stripped = text.lstrip()
    if stripped.startswith("{") and len([ln for ln in text.splitlines() if ln.strip()]) > 1:
        try:
            json.loads(text)
        except ValueError:
            return "jsonl"
    return "json"


def group_of(body: str, group: str, group_by: str | None) -> str:
    """The FIFO group of a book: ``group``, or its field ``group_by`` made a valid group id."""
    if group_by is None:
        return group
    try:
        value = json.loads(body).get(group_by)
    except (ValueError, AttributeError):
        return group
    # SQS takes 1-128 printable ASCII characters as a group id.
    text = "".join(c if 0x21 <= ord(c) <= 0x7E else "_" for c in str(value or group))
    return text[:128] or group


@dataclass
class Sent:
    """What a send did: the id SQS gave each message it took, and why the others were not."""

    ids: dict[str, str] = field(default_factory=dict)
    """Message id, by ref."""
    problems: dict[str, str] = field(default_factory=dict)
    """Why it was not sent, by ref."""


def send_in_order(
    queue: BatchSender,
    messages: Sequence[Outgoing],
    *,
    on_batch: Callable[[Sequence[Outgoing]], None] = lambda _: None,
) -> Sent:
    """Send ``messages`` in order, each group stopping at its first message not sent.

    A body SQS would refuse for its characters is not sent at all, so it cannot fail
    alone inside a batch call while later messages of its group get through.
    ``on_batch`` is told of each batch call's worth once it is done (a progress bar).
    """
    sent = Sent()
    stopped: set[str] = set()
    for chunk in batches(messages):
        todo = []
        for m in chunk:
            bad = refused_character(m.body)
            if m.group_id in stopped:
                sent.problems[m.ref] = f"an earlier book of its group ({m.group_id}) was not sent"
            elif bad is not None:
                sent.problems[m.ref] = f"SQS refuses its {bad}"
                stopped.add(m.group_id)
            else:
                todo.append(m)
        try:
            ids, refused = queue.send_batch(todo) if todo else ({}, {})
        except AwsFault as exc:
            ids, refused = {}, {m.ref: exc for m in todo}
        sent.ids.update(ids)
        for m in todo:
            if m.ref in refused:
                sent.problems[m.ref] = str(refused[m.ref])
                stopped.add(m.group_id)
        on_batch(chunk)
    return sent
