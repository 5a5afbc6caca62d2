"""`sortie offboard USER --dry-run`: what an offboarding would find and do, changing
nothing (`POST /v1/offboardings:preview`)."""

from __future__ import annotations

import sys
from typing import Any

import httpx

from .render import Painter


def _discovery_lines(name: str, answer: dict[str, Any], paint: Painter) -> list[str]:
    found = answer.get("discovery")
    if not answer.get("answered") or found is None:
        return [f"  {name}: {paint.paint('no answer', 'yellow')} (the worker did not reply)"]
    if found.get("error"):
        return [f"  {name}: {paint.paint('could not look', 'yellow')}: {found['error']}"]
    lines = [f"  {name} (from {found['source']}):"]
    if name == "m365":
        tried = "; ".join(found.get("identity_tried") or []) or "nothing"
        identity = found.get("identity") or paint.paint("no Microsoft 365 account", "yellow")
        lines.append(f"    identity: {identity} (tried: {tried})")
    else:
        apps = ", ".join(found.get("applications") or []) or "none"
        lines.append(f"    SSO sessions: {found.get('sso_sessions_found')}, applications: {apps}")
    return lines


def render(data: dict[str, Any], paint: Painter) -> list[str]:
    user = data["subject"]["user_id"]
    lines = [f"Preview of the offboarding of {paint.bold(user)} (nothing was changed):"]
    lines.append("Found:")
    for name, answer in sorted(data["services"].items()):
        lines.extend(_discovery_lines(name, answer, paint))
    hosts = data["hosts"]
    if hosts:
        lines.append(
            "  hosts with a session: "
            + ", ".join(f"{h['host']}{'' if h['live'] else ' (lapsed)'}" for h in hosts)
        )
    else:
        lines.append("  hosts with a session: none")
    lines.append("Will do:")
    for service, actions in data["will_do"].items():
        lines.append(f"  {service}: {', '.join(actions)}")
    return lines


def run(api: str, headers: dict[str, str], body: dict[str, Any], paint: Painter) -> int:
    try:
        resp = httpx.post(f"{api}/v1/offboardings:preview", json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        print(f"sortie: cannot reach {api}: {exc}", file=sys.stderr)
        return 1
    if resp.status_code != 200:
        print(f"sortie: preview refused ({resp.status_code}): {resp.text[:300]}", file=sys.stderr)
        return 1
    print("\n".join(render(resp.json(), paint)))
    return 0
