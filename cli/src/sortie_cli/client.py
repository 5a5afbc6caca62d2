"""What every `sortie` command that talks to the API shares: where the API is, its token,
the exit codes of a request's outcome, submitting a request and following it to its end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from .render import Painter, render_request
from .stack_files import load_stack_file

EXIT = {"completed": 0, "partial": 3, "failed": 4, "cancelled": 5}
FINAL = set(EXIT)
STILL_RUNNING = 6


def workdir(args: argparse.Namespace) -> Path:
    return Path(args.workdir or os.environ.get("SORTIE_WORKDIR", ".sortie"))


def api_and_token(args: argparse.Namespace) -> tuple[str, str]:
    stack = load_stack_file(workdir(args)) or {}
    url = args.api or os.environ.get("SORTIE_API_URL") or stack.get("urls", {}).get("api")
    token = args.token or os.environ.get("SORTIE_TOKEN") or os.environ.get("SORTIE_DEV_TOKEN")
    token = token or stack.get("token")
    if not url or not token:
        raise SystemExit(
            "sortie: no API to talk to. Start one with `sortie up`, or set SORTIE_API_URL "
            "and SORTIE_TOKEN."
        )
    return url.rstrip("/"), token


def detail(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("detail", resp.text))
    except ValueError:
        return resp.text[:200]


def accepted(api: str, send: Callable[[], httpx.Response]) -> httpx.Response | None:
    """The 202 answer to `send()`, or None once said on stderr why there is none."""
    try:
        resp = send()
    except httpx.HTTPError as exc:
        print(f"sortie: cannot reach {api}: {exc}", file=sys.stderr)
        return None
    if resp.status_code != 202:
        print(f"sortie: refused ({resp.status_code}): {detail(resp)}", file=sys.stderr)
        return None
    return resp


def exit_code(view: dict[str, Any]) -> int:
    return EXIT.get(view.get("status", ""), STILL_RUNNING)


def follow(api: str, headers: dict[str, str], rid: str, timeout: float, paint: Painter) -> int:
    """Print each step of request `rid` as it ends, then the request; its exit code."""
    deadline = time.monotonic() + timeout
    shown: set[tuple[str, str]] = set()
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            view = httpx.get(f"{api}/v1/requests/{rid}", headers=headers, timeout=10).json()
        except (httpx.HTTPError, ValueError) as exc:
            print(f"sortie: {exc}", file=sys.stderr)
            return 1
        for service, svc in sorted(view.get("services", {}).items()) + (
            [("sso", view["sso"])] if view.get("sso") else []
        ):
            for step in svc.get("steps", []):
                key = (service, step["action"])
                if key not in shown:
                    shown.add(key)
                    print("  " + paint.step_line(service, step))
        if view.get("status") in FINAL:
            break
        time.sleep(0.15)
    print()
    print(render_request(view, paint))
    return exit_code(view)
