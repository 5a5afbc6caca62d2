"""`sortie reverse REQUEST_ID`: undo an offboarding (what it recorded), and show the
user's Temporary Access Pass once.

The unseal key comes in the answer to the reversal and stays in this process only; the
pass is revealed once (a second reveal is refused by the orchestrator) and printed, never
written to a file or a log.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Any

import httpx

from .client import FINAL, accepted, api_and_token, detail, exit_code
from .render import Painter, render_request

TAP_STEP = "issue_temporary_access_pass"


def add_parser(sub: Any) -> None:
    rev = sub.add_parser(
        "reverse",
        help="undo an offboarding: restore what it recorded, issue a Temporary Access Pass",
        epilog="Exit codes: 0 completed, 1 error, 3 partial, 4 failed, 6 still running.",
    )
    rev.add_argument("request_id", help="the offboarding to reverse")
    rev.add_argument("--reason", default="reversal")
    rev.add_argument(
        "--no-tap", action="store_true", help="restore only, issue no Temporary Access Pass"
    )
    rev.add_argument("--timeout", type=float, default=120.0)
    rev.set_defaults(func=cmd_reverse)


def _wait(client: httpx.Client, rid: str, timeout: float, final: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = client.get(f"/v1/requests/{rid}").json()
        if view.get("status") in final:
            break
        time.sleep(0.15)
    return view


def _tap_issued(view: dict[str, Any]) -> bool:
    steps = view.get("services", {}).get("m365", {}).get("steps", [])
    return any(s["action"] == TAP_STEP and s["outcome"] == "succeeded" for s in steps)


def cmd_reverse(args: argparse.Namespace) -> int:
    api, token = api_and_token(args)
    paint = Painter(sys.stdout)
    body = {"reason": args.reason, "issue_temporary_access_pass": not args.no_tap}
    with httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as client:
        resp = accepted(
            api,
            lambda: client.post(
                f"/v1/requests/{args.request_id}:reverse",
                json=body,
                headers={"Idempotency-Key": f"cli-{uuid.uuid4()}"},
            ),
        )
        if resp is None:
            return 1
        answer = resp.json()
        rid = answer["request_id"]
        print(f"Reversal of {args.request_id}: request {rid}")
        view = _wait(client, rid, args.timeout, FINAL)
        print(render_request(view, paint))
        code = exit_code(view)
        tap = answer.get("temporary_access_pass") or {}
        if args.no_tap or not tap.get("unseal_key"):
            return code
        if not _tap_issued(view):
            print(
                "sortie: no Temporary Access Pass was issued (see the step above)", file=sys.stderr
            )
            return code or 4
        shown = client.post(tap["reveal"], json={"unseal_key": tap["unseal_key"]})
        if shown.status_code != 200:
            print(f"sortie: {shown.status_code}: {detail(shown)}", file=sys.stderr)
            return 1
        who = view["subject"].get("upn") or view["subject"]["user_id"]
        secret = shown.json()["temporary_access_pass"]
        print(f"\nTemporary Access Pass for {who} (shown once): {paint.bold(secret)}")
        return code
