"""`sortie offboard --csv FILE`: thousands of offboardings (the end of a school year)
submitted at a bounded rate, with a progress bar and one result line per row.

The CSV has a header; `user_id` is required, `upn`, `cas_username`, `windows_account`,
`effective_at`, `reason` and `profile` (an offboarding profile) are optional. Each row
carries an Idempotency-Key derived from its content, so running the same file again after
an interruption starts nothing twice."""

from __future__ import annotations

import csv
import hashlib
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from .when import parse_when

COLUMNS = ("user_id", "upn", "cas_username", "windows_account", "effective_at", "reason")
# Read beside COLUMNS, and in a row's Idempotency-Key only when set (the keys of files
# written before it existed stay the same).
OPTIONAL = ("profile",)
RESULT_COLUMNS = ("row", "user_id", "outcome", "http_status", "request_id", "detail")
MAX_ROWS = 200_000
BUSY = ("in_progress", "sso_logout")


class BulkError(Exception):
    """The file cannot be used at all (exit code 2)."""


@dataclass
class Row:
    number: int
    values: dict[str, str]


@dataclass
class Limits:
    rate: float = 20.0  # requests per second
    max_in_flight: int = 200  # running offboardings before we wait (0: do not check)
    retries: int = 5
    max_wait_s: float = 30.0


@dataclass
class Tally:
    total: int
    counts: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return sum(self.counts.values())


def read_rows(path: Path) -> Iterator[Row]:
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise BulkError(f"cannot read {path}: {exc.strerror}") from exc
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        if "user_id" not in header:
            raise BulkError(f"{path}: the header must name a user_id column (got {header})")
        unknown = sorted(set(header) - set(COLUMNS) - set(OPTIONAL))
        if unknown:
            known = [*COLUMNS, *OPTIONAL]
            raise BulkError(f"{path}: unknown columns {unknown}; known: {known}")
        reader.fieldnames = header
        for number, raw in enumerate(reader, start=2):
            if number - 1 > MAX_ROWS:
                raise BulkError(f"{path}: more than {MAX_ROWS} rows; split the file")
            values = {k: (v or "").strip() for k, v in raw.items() if k in COLUMNS or k in OPTIONAL}
            if any(values.values()):
                yield Row(number, values)


def count_rows(path: Path) -> int:
    return sum(1 for _ in read_rows(path))


def body_for(row: Row) -> dict[str, Any]:
    v = row.values
    if not v.get("user_id"):
        raise ValueError("user_id is empty")
    subject = {k: v[k] for k in ("user_id", "upn", "cas_username", "windows_account") if v.get(k)}
    body: dict[str, Any] = {"subject": subject, "reason": v.get("reason") or "offboarding"}
    if v.get("effective_at"):
        body["effective_at"] = parse_when(v["effective_at"]).isoformat()
    if v.get("profile"):
        body["profile"] = v["profile"]
    return body


def idempotency_key(row: Row) -> str:
    canon = "\x1f".join(row.values.get(c, "") for c in COLUMNS)
    canon += "".join(f"\x1e{c}={row.values[c]}" for c in OPTIONAL if row.values.get(c))
    return "csv-" + hashlib.sha256(canon.encode()).hexdigest()[:40]


def _retry_after(resp: httpx.Response, attempt: int, cap: float) -> float:
    try:
        return min(float(resp.headers.get("retry-after", "")), cap)
    except ValueError:
        return min(0.5 * 2**attempt, cap)


def _detail(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("detail", ""))[:300]
    except ValueError:
        return resp.text[:300]


class Submitter:
    def __init__(
        self,
        client: httpx.Client,
        limits: Limits,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.limits = limits
        self.sleep = sleep
        self.next_at = time.monotonic()
        self.room = 0

    def _pace(self) -> None:
        """At most `rate` per second, and never more than `max_in_flight` running: after
        as many submissions as there was room for, count the running ones again."""
        now = time.monotonic()
        if self.next_at > now:
            self.sleep(self.next_at - now)
        self.next_at = max(self.next_at, time.monotonic()) + 1.0 / self.limits.rate
        if not self.limits.max_in_flight:
            return
        if self.room <= 0:
            busy = self._busy()
            while busy >= self.limits.max_in_flight:
                self.sleep(0.5)
                busy = self._busy()
            self.room = self.limits.max_in_flight - busy
        self.room -= 1

    def _busy(self) -> int:
        busy = 0
        for status in BUSY:
            resp = self.client.get(
                "/v1/requests", params={"status": status, "limit": self.limits.max_in_flight}
            )
            resp.raise_for_status()
            busy += len(resp.json()["items"])
        return busy

    def submit(self, row: Row) -> dict[str, str]:
        result = {"row": str(row.number), "user_id": row.values.get("user_id", "")}
        try:
            body = body_for(row)
        except ValueError as exc:
            return {**result, "outcome": "refused", "http_status": "", "detail": str(exc)}
        self._pace()
        headers = {"Idempotency-Key": idempotency_key(row)}
        for attempt in range(self.limits.retries + 1):
            try:
                resp = self.client.post("/v1/offboardings", json=body, headers=headers)
            except httpx.TransportError as exc:
                if attempt == self.limits.retries:
                    return {**result, "outcome": "error", "http_status": "", "detail": str(exc)}
                self.sleep(min(0.5 * 2**attempt, self.limits.max_wait_s))
                continue
            if resp.status_code in (429, 502, 503, 504) and attempt < self.limits.retries:
                self.sleep(_retry_after(resp, attempt, self.limits.max_wait_s))
                continue
            break
        status = str(resp.status_code)
        if resp.status_code == 202:
            data = resp.json()
            replayed = resp.headers.get("idempotent-replayed") == "true"
            return {
                **result,
                "outcome": "replayed" if replayed else data["status"],
                "http_status": status,
                "request_id": str(data["request_id"]),
                "detail": "",
            }
        outcome = "refused" if 400 <= resp.status_code < 500 else "error"
        return {**result, "outcome": outcome, "http_status": status, "detail": _detail(resp)}


class Progress:
    """A bar on a terminal; elsewhere a plain line every 10 %."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.total = max(total, 1)
        self.shown = -1

    def update(self, tally: Tally, final: bool = False) -> None:
        done = tally.done
        pct = 100 * done // self.total
        elapsed = max(time.monotonic() - tally.started, 1e-6)
        rate = done / elapsed
        eta = (self.total - done) / rate if rate > 0 else 0
        summary = " ".join(f"{k} {v}" for k, v in sorted(tally.counts.items()))
        if self.tty:
            filled = 30 * done // self.total
            bar = "█" * filled + "·" * (30 - filled)
            self.stream.write(
                f"\r[{bar}] {done}/{self.total} {pct:3d}%  {summary}  {rate:.1f}/s  "
                f"ETA {int(eta) // 60}m{int(eta) % 60:02d}s\x1b[K"
            )
            if final:
                self.stream.write("\n")
        elif pct // 10 > self.shown or (final and self.shown < 10):
            self.shown = max(pct // 10, 10 if final else 0)
            self.stream.write(f"{done}/{self.total} ({pct}%)  {summary}  {rate:.1f}/s\n")
        self.stream.flush()


def run_bulk(
    client: httpx.Client,
    csv_path: Path,
    results_path: Path,
    limits: Limits,
    progress_stream: TextIO = sys.stderr,
) -> Tally:
    tally = Tally(total=count_rows(csv_path))
    progress = Progress(progress_stream, tally.total)
    submitter = Submitter(client, limits)
    with results_path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=RESULT_COLUMNS)
        writer.writeheader()
        for row in read_rows(csv_path):
            result = submitter.submit(row)
            writer.writerow({c: result.get(c, "") for c in RESULT_COLUMNS})
            out.flush()
            tally.counts[result["outcome"]] += 1
            progress.update(tally)
    progress.update(tally, final=True)
    return tally
