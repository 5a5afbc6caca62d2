"""The metric names of the design: dashboards and alerts rely on them, so they live here once.

Every process registers them on its own `REGISTRY`, which also carries FastStream's
consumer metrics (RedisPrometheusMiddleware) and the process collector.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# One step, retries included: from the first attempt to the final outcome.
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
# Accepted -> SSO session destroyed.
REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 300)

REVOCATION_DURATION = Histogram(
    "sortie_revocation_duration_seconds",
    "Duration of one revocation step, retries included",
    ["service", "action", "outcome"],
    buckets=STEP_BUCKETS,
    registry=REGISTRY,
)
REQUEST_DURATION = Histogram(
    "sortie_request_duration_seconds",
    "Duration of a request, from acceptance to the end of the SSO logout",
    ["kind", "status"],
    buckets=REQUEST_BUCKETS,
    registry=REGISTRY,
)
REQUESTS_TOTAL = Counter(
    "sortie_requests_total",
    "Requests by kind and status: accepted when taken in, final status when finished",
    ["kind", "status"],
    registry=REGISTRY,
)
REQUESTS_IN_FLIGHT = Gauge(
    "sortie_requests_in_flight",
    "Requests accepted and not yet finished (read from Redis: the same on every replica)",
    ["kind"],
    registry=REGISTRY,
)
STEP_RETRIES = Counter(
    "sortie_step_retries_total",
    "Retries of revocation steps after a transient error",
    ["service", "action"],
    registry=REGISTRY,
)
DEADLETTER_TOTAL = Counter(
    "sortie_deadletter_total",
    "Messages given up and written to the deadletter stream",
    ["stream", "reason"],
    registry=REGISTRY,
)
AGENTS_ONLINE = Gauge(
    "sortie_agents_online",
    "Workstation agents whose heartbeat is current",
    registry=REGISTRY,
)
REQUESTS_OVERDUE = Gauge(
    "sortie_requests_overdue",
    "Unfinished requests whose deadline passed more than a grace period ago (read from Redis)",
    registry=REGISTRY,
)
VERIFICATIONS = Counter(
    "sortie_verification_total",
    "Read-backs of a step's post-condition, by result (verified, acknowledged, contradicted, "
    "unverified)",
    ["service", "result"],
    registry=REGISTRY,
)
FOLLOWUP_PENDING = Gauge(
    "sortie_followup_pending",
    "Requests with a revocation still being delivered after their deadline (follow-up), "
    "per service (read from Redis: the same on every replica)",
    ["service"],
    registry=REGISTRY,
)
M365_EXPECTED_WAIT = Gauge(
    "sortie_m365_expected_wait_seconds",
    "How long a Graph write queued now would wait for the tenant's write quota (writes "
    "queued in this process over the rate the app registrations allow)",
    registry=REGISTRY,
)
M365_WRITES_QUEUED = Gauge(
    "sortie_m365_writes_queued",
    "Graph writes waiting for the write quota in this process, by priority",
    ["priority"],
    registry=REGISTRY,
)
