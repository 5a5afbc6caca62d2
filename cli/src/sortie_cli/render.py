"""Readable terminal output: colours only on a terminal (and never with NO_COLOR)."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any, TextIO

_OUTCOME_MARK = {
    "succeeded": ("✓", "green"),
    "not_found": ("·", "dim"),
    "skipped": ("-", "dim"),
    "failed": ("✗", "red"),
    "timed_out": ("⏱", "yellow"),
    "unreachable": ("?", "yellow"),
}
_STATUS_COLOUR = {
    "completed": "green",
    "partial": "yellow",
    "failed": "red",
    "cancelled": "dim",
    "in_progress": "cyan",
    "sso_logout": "cyan",
    "scheduled": "cyan",
}
_CODES = {"green": "32", "red": "31", "yellow": "33", "cyan": "36", "dim": "2", "bold": "1"}


class Painter:
    def __init__(self, stream: TextIO) -> None:
        self.enabled = stream.isatty() and "NO_COLOR" not in os.environ

    def paint(self, text: str, colour: str) -> str:
        if not self.enabled:
            return text
        return f"\x1b[{_CODES[colour]}m{text}\x1b[0m"

    def bold(self, text: str) -> str:
        return self.paint(text, "bold")

    def green(self, text: str) -> str:
        return self.paint(text, "green")

    def status(self, status: str) -> str:
        return self.paint(status, _STATUS_COLOUR.get(status, "bold"))

    def step_line(self, service: str, step: dict[str, Any]) -> str:
        mark, colour = _OUTCOME_MARK.get(step["outcome"], ("?", "bold"))
        ms = step.get("duration_seconds", 0.0) * 1000
        tries = f"  ({step['attempts']} attempts)" if step.get("attempts", 1) > 1 else ""
        err = step.get("error") or {}
        why = f"  {err.get('code')}: {err.get('message')}" if err else ""
        detail = f"  {step['detail']}" if step.get("detail") and not err else ""
        proof = step.get("proof", "")
        if proof:
            proof_colour = "green" if step.get("done") else "red"
            proof = f"  [{self.paint(proof, proof_colour)}]"
        return (
            f"{self.paint(mark, colour)} {service:<22} {step['action']:<28} "
            f"{self.paint(step['outcome'], colour):<12} {ms:8.1f} ms{proof}{tries}{why}{detail}"
        )


def redact_url(url: str) -> str:
    """A URL fit to print: any user and password replaced by `***`."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def render_request(view: dict[str, Any], paint: Painter) -> str:
    if not view:
        return "(no data)"
    lines = [
        f"Request {view['request_id']}  {view['kind']}  {paint.status(view['status'])}"
        + (
            f"  in {view['duration_seconds']:.3f} s"
            if view.get("duration_seconds") is not None
            else ""
        ),
        f"Subject {view['subject']['user_id']}"
        + (f" ({view['subject']['upn']})" if view["subject"].get("upn") else ""),
    ]
    rows: list[tuple[datetime | None, str, dict[str, Any]]] = []
    for service, svc in view.get("services", {}).items():
        for step in svc.get("steps", []):
            rows.append((_ts(step.get("started_at")), service, step))
    rows.sort(key=lambda r: (r[0] or datetime.max.replace(tzinfo=None)).isoformat())
    lines.append("")
    lines.append("Phase 1 (in parallel):")
    lines.extend("  " + paint.step_line(service, step) for _, service, step in rows)
    if not rows:
        lines.append("  (no service held a session)")
    sso = view.get("sso")
    lines.append("Phase 2 (after every step above):")
    if sso and sso.get("steps"):
        lines.extend("  " + paint.step_line("sso", step) for step in sso["steps"])
    else:
        lines.append(f"  sso {sso['state'] if sso else 'not started'}")
    lines.extend(render_phases(view, paint))
    cov = view.get("coverage")
    if cov:
        lines.append("")
        lines.extend(render_coverage(cov))
    return "\n".join(lines)


def render_phases(view: dict[str, Any], paint: Painter) -> list[str]:
    """The profile that ran, its later phases (dates, outcomes) and reversal links."""
    lines = []
    if view.get("profile"):
        lines.append(f"Profile {view['profile']}")
    for phase in view.get("phases", [])[1:]:
        when = phase.get("finished_at") or phase.get("at") or f"+{phase['after_seconds']:.0f} s"
        lines.append(
            f"Profile phase {phase['index']} ({', '.join(phase['actions'])}): "
            f"{paint.status(phase['status'])}  {str(when)[:19]}"
        )
        for service, svc in phase.get("services", {}).items():
            lines.extend("  " + paint.step_line(service, step) for step in svc.get("steps", []))
    if view.get("reverses"):
        lines.append(f"Reverses {view['reverses']}")
    if view.get("reversed_by"):
        lines.append(f"Reversed by {view['reversed_by']}")
    return ["", *lines] if lines else []


def _count(value: int | None) -> str:
    return "unknown" if value is None else str(value)


def render_coverage(cov: dict[str, Any]) -> list[str]:
    """What Sortie found and how much of it is proven ended."""
    tried = ", ".join(cov.get("m365_identity_tried") or []) or "nothing"
    identity = cov.get("m365_identity") or f"not resolved (tried: {tried})"
    apps = ", ".join(cov.get("applications") or []) or "none found"
    hosts = ", ".join(cov.get("hosts") or []) or "none"
    return [
        "Coverage:",
        f"  Microsoft 365 identity  {identity}",
        f"  SSO sessions            {_count(cov.get('sso_sessions_found'))} found, "
        f"{_count(cov.get('sso_sessions_ended'))} ended",
        f"  applications reached    {apps}  (tickets: {_count(cov.get('tickets_found'))} found "
        f"in the CAS, {_count(cov.get('tickets_from_caller'))} from the caller)",
        f"  hosts with a session    {hosts}",
        f"  steps                   {cov.get('steps_total', 0)}: "
        f"{cov.get('steps_verified', 0)} verified, {cov.get('steps_acknowledged', 0)} "
        f"acknowledged, {cov.get('steps_not_proven', 0)} not proven",
    ]
