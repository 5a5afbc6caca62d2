"""`sortie`: run the stack, submit a logout, follow a request.

Exit codes a script can rely on: 0 completed (or OK), 1 error (HTTP, connection),
2 usage, 3 partial, 4 failed, 5 cancelled, 6 still running when --wait gave up,
7 `offboard --csv`: some rows were refused (see the results file).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from . import agent_acl, offboard, redis_acl, reverse
from .client import accepted, api_and_token, detail, exit_code, follow, workdir
from .render import Painter, redact_url, render_request
from .stack import Stack, StackError, load_stack_file


def cmd_up(args: argparse.Namespace) -> int:
    paint = Painter(sys.stdout)
    stack = Stack(
        workdir=workdir(args), api_port=args.port, m365_identity_lookups=args.m365_lookups
    )
    try:
        stack.plan()
    except StackError as exc:
        print(f"sortie up: {exc}", file=sys.stderr)
        return 1
    print(paint.bold("Starting Sortie…"))

    def ready(proc: Any) -> None:
        print(f"  {paint.green('✓')} {proc.name}")

    try:
        stack.start(timeout=args.timeout, on_ready=ready)
    except (StackError, KeyboardInterrupt) as exc:
        print(f"sortie up: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    _print_stack(stack, paint)
    return _run_until_stopped(stack, args, paint)


def _print_stack(stack: Stack, paint: Painter) -> None:
    print()
    print(paint.bold("Sortie is up."))
    print(f"  API          {stack.urls['api']}  (docs at /docs, metrics at /metrics)")
    # A token the user chose is theirs already: only a generated one is shown, and only
    # to a person at a terminal (an output kept in a file or a CI log must not hold it).
    saved = stack.workdir / "stack.json"
    if stack.token_generated and sys.stdout.isatty():
        print(f"  token        {stack.token}  (saved in {saved}, owner-only)")
    elif stack.token_generated:
        print(f'  token        in {saved} (owner-only), key "token"')
    else:
        print("  token        the value of SORTIE_DEV_TOKEN")
    print(f"  Redis        {redact_url(stack.urls['redis'])}")
    for key, url in sorted(stack.urls.items()):
        if key.startswith("sim_"):
            print(f"  simulator    {key[4:]:<13}{url}")
    print(f"  logs         {stack.workdir / 'logs'}")
    if "console" in stack.urls:
        print(f"  console      {stack.urls['console']}")
        for text in stack.console_banner:
            print(f"               {text}")
    print()
    print("Try:  sortie logout alice --wait        Stop: Ctrl-C")


def _run_until_stopped(stack: Stack, args: argparse.Namespace, paint: Painter) -> int:
    """Run the demo when asked, then keep the stack alive until SIGTERM or Ctrl-C."""
    status = 0
    stopping = False

    def on_signal(_sig: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if args.demo:
            print()
            print(paint.bold("Demo: alice logs out of the ENT"))
            status = _logout_and_wait(
                stack.urls["api"],
                stack.token or "",
                "alice",
                workdir(args),
                targets=None,
                wait=True,
                timeout=60.0,
                paint=paint,
            )
            if args.exit:
                return status
        while not stopping:
            # A process that dies is restarted (with a back-off), never the whole stack.
            stack.supervise(lambda line: print(line, file=sys.stderr, flush=True))
            time.sleep(0.5)
    finally:
        print("\nStopping Sortie…")
        stack.stop()
        print("Stopped.")
    return status


def _sso_session_from_cas_sim(workdir: Path, user: str) -> dict[str, Any] | None:
    """In the local stack the ENT's CAS is the simulator: read the user's live session
    from it, as the ENT would pass it along with its logout."""
    stack = load_stack_file(workdir) or {}
    cas = stack.get("urls", {}).get("sim_cas")
    if not cas:
        return None
    try:
        resp = httpx.get(f"{cas}/_sim/users/{user}/sso", timeout=5)
    except httpx.HTTPError:
        return None
    if resp.status_code != 200:
        return None
    data: dict[str, Any] = resp.json()
    return {"tgt": data.get("tgt"), "service_tickets": data.get("service_tickets", [])}


def _logout_and_wait(
    api: str,
    token: str,
    user: str,
    workdir: Path,
    *,
    targets: list[str] | None,
    wait: bool,
    timeout: float,
    paint: Painter,
    upn: str | None = None,
    tgt: str | None = None,
) -> int:
    stack = load_stack_file(workdir) or {}
    domain = stack.get("upn_domain")
    subject: dict[str, Any] = {"user_id": user, "cas_username": user, "windows_account": user}
    if upn or domain:
        subject["upn"] = upn or f"{user}@{domain}"
    body: dict[str, Any] = {"subject": subject, "reason": "user_logout"}
    if targets:
        body["targets"] = targets
    sso = {"tgt": tgt, "service_tickets": []} if tgt else _sso_session_from_cas_sim(workdir, user)
    if sso:
        body["sso_session"] = sso
    headers = {"Authorization": f"Bearer {token}"}
    resp = accepted(
        api, lambda: httpx.post(f"{api}/v1/logouts", json=body, headers=headers, timeout=10)
    )
    if resp is None:
        return 1
    rid = resp.json()["request_id"]
    print(f"Logout of {paint.bold(user)} accepted: request {rid}")
    if not wait:
        return 0
    return follow(api, headers, rid, timeout, paint)


def cmd_logout(args: argparse.Namespace) -> int:
    api, token = api_and_token(args)
    return _logout_and_wait(
        api,
        token,
        args.user,
        workdir(args),
        targets=args.targets.split(",") if args.targets else None,
        wait=args.wait,
        timeout=args.timeout,
        paint=Painter(sys.stdout),
        upn=args.upn,
        tgt=args.tgt,
    )


def cmd_status(args: argparse.Namespace) -> int:
    api, token = api_and_token(args)
    headers = {"Authorization": f"Bearer {token}"}
    paint = Painter(sys.stdout)
    if args.watch:
        return follow(api, headers, args.request_id, args.timeout, paint)
    resp = httpx.get(f"{api}/v1/requests/{args.request_id}", headers=headers, timeout=10)
    if resp.status_code != 200:
        print(f"sortie: {resp.status_code}: {detail(resp)}", file=sys.stderr)
        return 1
    view = resp.json()
    print(render_request(view, paint))
    return exit_code(view)


def cmd_requests(args: argparse.Namespace) -> int:
    api, token = api_and_token(args)
    params: dict[str, Any] = {"limit": args.limit}
    if args.user:
        params["subject"] = args.user
    if args.status:
        params["status"] = args.status
    resp = httpx.get(
        f"{api}/v1/requests",
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    if resp.status_code != 200:
        print(f"sortie: {resp.status_code}: {detail(resp)}", file=sys.stderr)
        return 1
    paint = Painter(sys.stdout)
    for item in resp.json()["items"]:
        dur = item.get("duration_seconds")
        print(
            f"{item['request_id']}  {item['kind']:<8} {paint.status(item['status']):<20} "
            f"{item['subject']['user_id']:<24} {item['created_at'][:19]}  "
            f"{'' if dur is None else f'{dur:.2f}s'}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sortie", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="state folder of `sortie up` (default .sortie)")
    parser.add_argument("--api", help="orchestrator URL (default: the running `sortie up`)")
    parser.add_argument("--token", help="API token (default: $SORTIE_TOKEN or the local stack's)")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole stack locally until Ctrl-C")
    up.add_argument("--port", type=int, default=8080, help="orchestrator port (default 8080)")
    up.add_argument("--demo", action="store_true", help="log alice out once everything is up")
    up.add_argument("--exit", action="store_true", help="with --demo: stop after the demo")
    up.add_argument("--timeout", type=float, default=90.0, help="start-up timeout in seconds")
    up.add_argument(
        "--m365-lookups",
        help="how Microsoft 365 users are found from the ENT id, e.g. "
        "'onPremisesSamAccountName={user_id},upn={user_id}@school.example' "
        "(default: $SORTIE_M365_IDENTITY_LOOKUPS, else the subject's UPN only)",
    )
    up.set_defaults(func=cmd_up)

    logout = sub.add_parser("logout", help="sign a user out everywhere")
    logout.add_argument("user", help="ENT user id (also the CAS and Windows account name)")
    logout.add_argument("--upn", help="Microsoft 365 UPN (default USER@<demo domain>)")
    logout.add_argument("--targets", help="comma-separated subset of m365,ent,workstations")
    logout.add_argument("--tgt", help="the CAS TGT of the session being closed")
    logout.add_argument("--wait", action="store_true", help="follow until the request ends")
    logout.add_argument("--timeout", type=float, default=120.0)
    logout.set_defaults(func=cmd_logout)

    status = sub.add_parser("status", help="show one request")
    status.add_argument("request_id")
    status.add_argument("--watch", action="store_true", help="follow until it ends")
    status.add_argument("--timeout", type=float, default=120.0)
    status.set_defaults(func=cmd_status)

    reqs = sub.add_parser("requests", help="list recent requests")
    reqs.add_argument("--user", help="only this subject")
    reqs.add_argument("--status", help="only this status")
    reqs.add_argument("--limit", type=int, default=20)
    reqs.set_defaults(func=cmd_requests)
    offboard.add_parser(sub)
    reverse.add_parser(sub)
    agent_acl.add_parser(sub).set_defaults(func=lambda a: agent_acl.cmd_agent_acl(a, workdir(a)))
    redis_acl.add_parser(sub).set_defaults(func=lambda a: redis_acl.cmd_redis_acl(a, workdir(a)))
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))
