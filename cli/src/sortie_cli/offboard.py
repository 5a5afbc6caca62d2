"""`sortie offboard USER [--at TIME] [--wait]` and `sortie offboard --csv FILE`."""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from . import preview
from .bulk import BulkError, Limits, run_bulk
from .client import accepted, api_and_token, follow
from .render import Painter
from .when import parse_when

EXIT_SOME_ROWS_FAILED = 7


def add_parser(sub: Any) -> None:
    off = sub.add_parser(
        "offboard",
        help="offboard a user now or later, or every user of a CSV file",
        epilog="Exit codes: 0 accepted (with --wait: completed), 1 error, 2 usage, "
        "3 partial, 4 failed, 5 cancelled, 6 still running, 7 some CSV rows refused.",
    )
    off.add_argument("user", nargs="?", help="ENT user id (also the CAS and Windows account)")
    off.add_argument("--upn", help="Microsoft 365 UPN")
    off.add_argument("--at", help="when: ISO 8601 (local time unless a zone is given), +2h, now")
    off.add_argument("--reason", default="offboarding")
    off.add_argument("--profile", help="offboarding profile (default: the site's)")
    off.add_argument("--wait", action="store_true", help="follow until the request ends")
    off.add_argument(
        "--dry-run",
        action="store_true",
        help="show what Sortie finds and would do (M365 identity, SSO sessions, hosts); "
        "change nothing",
    )
    off.add_argument("--timeout", type=float, default=120.0)
    off.add_argument("--csv", type=Path, help="one offboarding per row (header: user_id,…)")
    off.add_argument("--results", type=Path, help="per-row results (default FILE.results.csv)")
    off.add_argument("--rate", type=float, default=20.0, help="requests per second (default 20)")
    off.add_argument(
        "--max-in-flight",
        type=int,
        default=200,
        help="wait while this many offboardings run (default 200, 0 = do not check)",
    )
    off.set_defaults(func=cmd_offboard)


def cmd_offboard(args: argparse.Namespace) -> int:
    if bool(args.csv) == bool(args.user):
        print("sortie offboard: give either USER or --csv FILE", file=sys.stderr)
        return 2
    if args.csv:
        return _bulk(args, *api_and_token(args))
    try:
        effective = parse_when(args.at) if args.at else None
    except ValueError as exc:
        print(f"sortie offboard: {exc}", file=sys.stderr)
        return 2
    api, token = api_and_token(args)
    paint = Painter(sys.stdout)
    subject: dict[str, Any] = {"user_id": args.user}
    if args.upn:
        subject["upn"] = args.upn
    body: dict[str, Any] = {"subject": subject, "reason": args.reason}
    if args.profile:
        body["profile"] = args.profile
    if effective is not None:
        body["effective_at"] = effective.isoformat()
    headers = {"Authorization": f"Bearer {token}"}
    if args.dry_run:
        return preview.run(api, headers, body, paint)
    resp = accepted(
        api,
        lambda: httpx.post(
            f"{api}/v1/offboardings",
            json=body,
            headers={**headers, "Idempotency-Key": f"cli-{uuid.uuid4()}"},
            timeout=10,
        ),
    )
    if resp is None:
        return 1
    data = resp.json()
    rid = data["request_id"]
    when = (
        f" for {effective.isoformat(timespec='seconds')}"
        if data["status"] == "scheduled" and effective
        else ""
    )
    profile = f" (profile {data['profile']})" if args.profile and data.get("profile") else ""
    print(
        f"Offboarding of {paint.bold(args.user)}{profile} {paint.status(data['status'])}{when}: "
        f"request {rid}"
    )
    if not args.wait:
        return 0
    return follow(api, headers, rid, args.timeout, paint)


def _bulk(args: argparse.Namespace, api: str, token: str) -> int:
    if args.rate <= 0 or args.rate > 1000 or args.max_in_flight < 0:
        print("sortie offboard: --rate must be in (0, 1000], --max-in-flight ≥ 0", file=sys.stderr)
        return 2
    results = args.results or args.csv.with_name(args.csv.name + ".results.csv")
    limits = Limits(rate=args.rate, max_in_flight=args.max_in_flight)
    paint = Painter(sys.stdout)
    try:
        with httpx.Client(
            base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=15
        ) as client:
            tally = run_bulk(client, args.csv, results, limits)
    except BulkError as exc:
        print(f"sortie offboard: {exc}", file=sys.stderr)
        return 2
    except httpx.HTTPError as exc:
        print(f"sortie offboard: {api}: {exc}", file=sys.stderr)
        return 1
    bad = tally.counts["refused"] + tally.counts["error"]
    summary = ", ".join(f"{v} {k}" for k, v in sorted(tally.counts.items())) or "no rows"
    colour = paint.green if not bad else (lambda s: paint.paint(s, "yellow"))
    print(colour(f"{tally.done} rows: {summary}.") + f" Results in {results}")
    return EXIT_SOME_ROWS_FAILED if bad else 0
