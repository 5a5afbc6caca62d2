"""HTML for the helpdesk status page: the request list, and one request's timeline drawn
as an SVG (one bar per step on a shared time axis). Every value is escaped."""

from __future__ import annotations

import math
import string
from datetime import UTC, datetime
from functools import cache
from html import escape
from pathlib import Path
from urllib.parse import quote

from sortie_core.events import StepResult

from .saga import SagaState, ServiceState, coverage, proof_of

_HERE = Path(__file__).parent
_LABEL_W, _PLOT_L, _PLOT_R, _ROW_H, _TOP = 230, 240, 960, 26, 34


@cache
def template(name: str) -> string.Template:
    return string.Template((_HERE / "templates" / name).read_text())


def page(title: str, body: str, user: str | None = None) -> str:
    nav = (
        f'<form method="post" action="/ui/logout" class="who">{escape(user)} '
        '<button type="submit">Sign out</button></form>'
        if user
        else ""
    )
    return template("base.html").substitute(title=escape(title), body=body, nav=nav)


def _when(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "—"


def status_badge(status: str) -> str:
    return f'<span class="badge s-{escape(status)}">{escape(status.replace("_", " "))}</span>'


def request_rows(items: list[SagaState]) -> str:
    if not items:
        return '<tr><td colspan="6" class="empty">No request.</td></tr>'
    rows = []
    for s in items:
        dur = s.duration_seconds()
        rows.append(
            "<tr>"
            f'<td><a href="/ui/requests/{s.request_id}">{str(s.request_id)[:8]}</a></td>'
            f"<td>{escape(s.kind.value)}</td>"
            f'<td><a href="/ui/?user={escape(quote(s.subject.user_id, safe=""))}">'
            f"{escape(s.subject.user_id)}</a></td>"
            f"<td>{status_badge(s.status)}</td>"
            f"<td>{_when(s.created_at)}</td>"
            f"<td>{'' if dur is None else f'{dur:.3f} s'}</td>"
            "</tr>"
        )
    return "\n".join(rows)


def _tick_step(span_ms: float) -> float:
    raw = span_ms / 6
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for mult in (1, 2, 5, 10):
        if raw <= mult * power:
            return mult * power
    return 10 * power


def _fmt_ms(ms: float) -> str:
    return f"{ms / 1000:g} s" if ms >= 1000 else f"{ms:g} ms"


def _rows(state: SagaState) -> list[tuple[str, str, ServiceState]]:
    rows = [(name, name, svc) for name, svc in sorted(state.services.items())]
    if state.sso is not None:
        rows.append(("sso", "sso (CAS)", state.sso))
    return rows


def timeline_svg(state: SagaState, now: datetime) -> str:
    """Each service's steps as bars from their start to their end, SSO last."""
    t0 = state.started_at or state.created_at
    end = state.finished_at or now
    lanes: list[tuple[str, str, float, float, str]] = []  # label, outcome, start, end, tip
    for _key, label, svc in _rows(state):
        if not svc.steps:
            lanes.append((f"{label} · {svc.state}", f"w-{svc.state}", 0.0, -1.0, svc.state))
        for step in svc.steps:
            a = (step.started_at - t0).total_seconds() * 1000
            b = (step.finished_at - t0).total_seconds() * 1000
            tip = f"{label} {step.action}: {step.outcome.value}, {b - a:.1f} ms"
            if step.attempts > 1:
                tip += f", {step.attempts} attempts"
            lanes.append((f"{label} · {step.action}", step.outcome.value, a, b, tip))
            end = max(end, step.finished_at)
    span = max((end - t0).total_seconds() * 1000, 1.0)
    step_ms = _tick_step(span)
    span = math.ceil(span / step_ms) * step_ms
    scale = (_PLOT_R - _PLOT_L) / span
    height = _TOP + max(len(lanes), 1) * _ROW_H + 12
    out = [
        f'<svg class="timeline" viewBox="0 0 980 {height}" width="980" height="{height}" '
        'role="img" aria-label="timeline of the steps" xmlns="http://www.w3.org/2000/svg">'
    ]
    ticks = round(span / step_ms)
    for i in range(ticks + 1):
        x = _PLOT_L + i * step_ms * scale
        out.append(
            f'<line class="grid" x1="{x:.1f}" y1="{_TOP - 6}" x2="{x:.1f}" y2="{height - 8}"/>'
        )
        out.append(f'<text class="tick" x="{x:.1f}" y="{_TOP - 12}">{_fmt_ms(i * step_ms)}</text>')
    if state.sso_requested_at is not None:
        x = _PLOT_L + (state.sso_requested_at - t0).total_seconds() * 1000 * scale
        out.append(
            f'<line class="phase" x1="{x:.1f}" y1="{_TOP - 6}" x2="{x:.1f}" y2="{height - 8}"/>'
        )
    for i, (label, outcome, a, b, tip) in enumerate(lanes):
        y = _TOP + i * _ROW_H
        out.append(f'<text class="lane" x="{_LABEL_W}" y="{y + 17}">{escape(label[:34])}</text>')
        if b < 0:
            x = _PLOT_L
            w = max((end - t0).total_seconds() * 1000 * scale, 2)
            out.append(
                f'<rect class="bar {escape(outcome)}" x="{x}" y="{y + 5}" width="{w:.1f}" '
                f'height="{_ROW_H - 10}"><title>{escape(tip)}</title></rect>'
            )
            continue
        x = _PLOT_L + a * scale
        w = max((b - a) * scale, 2.0)
        out.append(
            f'<rect class="bar o-{escape(outcome)}" x="{x:.1f}" y="{y + 5}" width="{w:.1f}" '
            f'height="{_ROW_H - 10}"><title>{escape(tip)}</title></rect>'
        )
        # Near the right edge the duration goes left of its bar.
        right = x + w + 60 < _PLOT_R + 20
        tx, cls = (x + w + 4, "dur") if right else (x - 4, "dur left")
        out.append(f'<text class="{cls}" x="{tx:.1f}" y="{y + 17}">{b - a:.1f} ms</text>')
    out.append("</svg>")
    return "".join(out)


def step_table(state: SagaState) -> str:
    rows = []
    for _key, label, svc in _rows(state):
        if not svc.steps:
            rows.append(
                f'<tr><td>{escape(label)}</td><td colspan="4">{escape(svc.state)}</td></tr>'
            )
        for step in svc.steps:
            err = f"{step.error.code}: {step.error.message}" if step.error else step.detail or ""
            proof = proof_of(step)
            rows.append(
                f"<tr><td>{escape(label)}</td><td>{escape(step.action)}</td>"
                f'<td><span class="o-{escape(step.outcome.value)}">'
                f"{escape(step.outcome.value)}</span></td>"
                f'<td><span class="p-{"ok" if step.done else "no"}">{escape(proof)}</span>'
                f"{_evidence(step)}</td>"
                f"<td>{step.duration_seconds * 1000:.1f} ms"
                f"{f' ({step.attempts} attempts)' if step.attempts > 1 else ''}</td>"
                f"<td>{escape(err[:300])}</td></tr>"
            )
    return (
        '<table class="steps"><thead><tr><th>Service</th><th>Step</th><th>Outcome</th>'
        "<th>Proof</th><th>Duration</th><th>Detail</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _evidence(step: StepResult) -> str:
    ev = step.evidence
    if ev is None:
        return ""
    seen = ", ".join(f"{k}={v}" for k, v in ev.observed.items())
    return (
        f'<div class="evidence">{escape(ev.source)} at {_when(ev.read_at)}'
        f"{': ' + escape(seen[:300]) if seen else ''}</div>"
    )


def coverage_list(state: SagaState) -> str:
    cov = coverage(state)

    def n(value: int | None) -> str:
        return "unknown" if value is None else str(value)

    tried = ", ".join(cov.m365_identity_tried) or "nothing"
    facts = [
        ("Microsoft 365 identity", cov.m365_identity or f"not resolved (tried: {tried})"),
        ("SSO sessions", f"{n(cov.sso_sessions_found)} found, {n(cov.sso_sessions_ended)} ended"),
        (
            "Applications reached",
            (", ".join(cov.applications) or "none found")
            + f" (tickets: {n(cov.tickets_found)} found in the CAS,"
            f" {n(cov.tickets_from_caller)} from the caller)",
        ),
        ("Hosts with a session", ", ".join(cov.hosts) or "none"),
        (
            "Steps",
            f"{cov.steps_total}: {cov.steps_verified} verified, {cov.steps_acknowledged} "
            f"acknowledged, {cov.steps_not_proven} not proven",
        ),
    ]
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    return f'<dl class="facts coverage">{items}</dl>'


def live_fragment(state: SagaState, now: datetime) -> str:
    """What the server-sent events replace as steps finish."""
    dur = state.duration_seconds()
    facts = [
        f'<dt>Status</dt><dd id="status">{status_badge(state.status)}</dd>',
        f"<dt>Created</dt><dd>{_when(state.created_at)}</dd>",
    ]
    if state.effective_at:
        facts.append(f"<dt>Effective</dt><dd>{_when(state.effective_at)}</dd>")
    if dur is not None:
        facts.append(f"<dt>Duration</dt><dd>{dur:.3f} s</dd>")
    return (
        f'<dl class="facts">{"".join(facts)}</dl>'
        f"<h2>Timeline</h2>{timeline_svg(state, now)}"
        f"<h2>Steps</h2>{step_table(state)}"
        f"<h2>Coverage</h2>{coverage_list(state)}"
    )


def request_page(state: SagaState, now: datetime) -> str:
    subject = state.subject
    who = escape(subject.user_id) + (f" ({escape(subject.upn)})" if subject.upn else "")
    events = "" if state.finished else f' data-events="/ui/requests/{state.request_id}/events"'
    return (
        f'<p><a href="/ui/">← all requests</a></p>'
        f"<h1>{escape(state.kind.value.capitalize())} of {who}</h1>"
        f'<p class="rid">Request {state.request_id} · reason {escape(state.reason)}'
        f" · by {escape(state.requested_by or '—')}</p>"
        f'<section id="live"{events}>{live_fragment(state, now)}</section>'
    )
