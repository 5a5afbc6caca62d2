"""HTML for the helpdesk status page and the user's logout page: Jinja2 templates (one
environment per language, autoescaped) and one request's timeline drawn as an SVG (one
bar per step on a shared time axis). Every value is escaped."""

from __future__ import annotations

import math
from datetime import datetime
from functools import cache
from html import escape
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from sortie_core.events import StepResult
from sortie_orchestrator.http.ui import labels
from sortie_orchestrator.http.ui.i18n import L10n, translations
from sortie_orchestrator.saga import SagaState, ServiceState, coverage

_HERE = Path(__file__).parent
_LABEL_W, _PLOT_L, _PLOT_R, _ROW_H, _TOP = 230, 240, 960, 26, 34


@cache
def environment(lang: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
    env.globals["labels"] = labels
    return env


def render(t: L10n, name: str, **context: Any) -> str:
    return environment(t.lang).get_template(name).render(t=t, **context)


def rows(state: SagaState) -> list[tuple[str, ServiceState]]:
    """Every service of the request, the SSO session last."""
    out = sorted(state.services.items())
    if state.sso is not None:
        out.append(("sso", state.sso))
    return out


def _tick_step(span_ms: float) -> float:
    raw = span_ms / 6
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for mult in (1, 2, 5, 10):
        if raw <= mult * power:
            return mult * power
    return 10 * power


def _fmt_ms(t: L10n, ms: float) -> str:
    return f"{t.number(ms / 1000, 2)} s" if ms >= 1000 else f"{t.number(ms, 1)} ms"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# One row of the timeline: label, outcome class, start and end (ms from the start; an end
# below 0: a service without steps, drawn over the whole span), tooltip.
Lane = tuple[str, str, float, float, str]


def _lanes(t: L10n, state: SagaState, t0: datetime, end: datetime) -> tuple[list[Lane], datetime]:
    """Each service's steps (a service without any: its state), SSO last; and the last end."""
    lanes: list[Lane] = []
    for name, svc in rows(state):
        label = labels.service_name(t, name)
        if not svc.steps:
            what = labels.service_state(t, svc.state)
            lanes.append((f"{label} · {what}", f"w-{svc.state}", 0.0, -1.0, what))
        for step in svc.steps:
            a = (step.started_at - t0).total_seconds() * 1000
            b = (step.finished_at - t0).total_seconds() * 1000
            plain = labels.step_name(t, name, step.action)
            tip = f"{plain}: {labels.outcome(t, step.outcome.value)}, {_fmt_ms(t, b - a)}"
            if step.attempts > 1:
                tip += " · " + t.gettext("%(n)s attempts") % {"n": step.attempts}
            lanes.append((plain, step.outcome.value, a, b, tip))
            end = max(end, step.finished_at)
    return lanes, end


def _axis(t: L10n, span: float, step_ms: float, scale: float, height: int) -> list[str]:
    """The vertical grid lines and their times."""
    out = []
    for i in range(round(span / step_ms) + 1):
        x = _PLOT_L + i * step_ms * scale
        out.append(
            f'<line class="grid" x1="{x:.1f}" y1="{_TOP - 6}" x2="{x:.1f}" y2="{height - 8}"/>'
        )
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{_TOP - 12}">{_fmt_ms(t, i * step_ms)}</text>'
        )
    return out


def _lane_svg(t: L10n, i: int, lane: Lane, scale: float, whole_ms: float) -> list[str]:
    """One row: its label, its bar with a tooltip, and its duration beside the bar."""
    label, outcome, a, b, tip = lane
    y = _TOP + i * _ROW_H
    out = [f'<text class="lane" x="{_LABEL_W}" y="{y + 17}">{escape(_clip(label, 36))}</text>']
    if b < 0:
        w = max(whole_ms * scale, 2)
        out.append(
            f'<rect class="bar {escape(outcome)}" x="{_PLOT_L}" y="{y + 5}" width="{w:.1f}" '
            f'height="{_ROW_H - 10}"><title>{escape(tip)}</title></rect>'
        )
        return out
    x = _PLOT_L + a * scale
    w = max((b - a) * scale, 2.0)
    out.append(
        f'<rect class="bar o-{escape(outcome)}" x="{x:.1f}" y="{y + 5}" width="{w:.1f}" '
        f'height="{_ROW_H - 10}"><title>{escape(tip)}</title></rect>'
    )
    # Near the right edge the duration goes left of its bar.
    right = x + w + 60 < _PLOT_R + 20
    tx, cls = (x + w + 4, "dur") if right else (x - 4, "dur left")
    out.append(f'<text class="{cls}" x="{tx:.1f}" y="{y + 17}">{_fmt_ms(t, b - a)}</text>')
    return out


def timeline_svg(t: L10n, state: SagaState, now: datetime) -> Markup:
    """Each service's steps as bars from their start to their end, SSO last."""
    t0 = state.started_at or state.created_at
    lanes, end = _lanes(t, state, t0, state.finished_at or now)
    whole_ms = (end - t0).total_seconds() * 1000
    span = max(whole_ms, 1.0)
    step_ms = _tick_step(span)
    span = math.ceil(span / step_ms) * step_ms
    scale = (_PLOT_R - _PLOT_L) / span
    height = _TOP + max(len(lanes), 1) * _ROW_H + 12
    aria = escape(t.gettext("timeline of the steps"))
    out = [
        f'<svg class="timeline" viewBox="0 0 980 {height}" width="980" height="{height}" '
        f'role="img" aria-label="{aria}" xmlns="http://www.w3.org/2000/svg">',
        *_axis(t, span, step_ms, scale, height),
    ]
    if state.sso_requested_at is not None:
        x = _PLOT_L + (state.sso_requested_at - t0).total_seconds() * 1000 * scale
        out.append(
            f'<line class="phase" x1="{x:.1f}" y1="{_TOP - 6}" x2="{x:.1f}" y2="{height - 8}"/>'
        )
    for i, lane in enumerate(lanes):
        out.extend(_lane_svg(t, i, lane, scale, whole_ms))
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 (every value above is escaped)


def evidence(t: L10n, step: StepResult) -> str:
    ev = step.evidence
    if ev is None:
        return ""
    seen = ", ".join(f"{k}={v}" for k, v in ev.observed.items())
    text = t.gettext("%(source)s at %(when)s") % {"source": ev.source, "when": t.when(ev.read_at)}
    return text + (": " + seen[:300] if seen else "")


def live_fragment(t: L10n, state: SagaState, now: datetime) -> str:
    """What the server-sent events replace as steps finish."""
    return render(
        t,
        "live.html",
        state=state,
        services=rows(state),
        cov=coverage(state),
        timeline=timeline_svg(t, state, now),
        evidence=evidence,
    )


def request_page(
    t: L10n,
    state: SagaState,
    now: datetime,
    viewer: str | None,
    may: frozenset[str] = frozenset(),
) -> str:
    live = Markup(live_fragment(t, state, now))  # noqa: S704 (rendered autoescaped)
    return render(t, "request.html", viewer=viewer, state=state, live=live, may=may)
