"""Composition root: settings -> registry and adapters -> subscriptions."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from faststream.redis import RedisBroker
from pydantic import BaseModel, SecretStr
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.broker import Delivery, Handler, Subscription
from sortie_core.credentials import load_credentials
from sortie_core.events import (
    DeadLettered,
    LogoutRequested,
    OffboardRequested,
    PreviewRequested,
    RevocationCompleted,
    SsoLogoutCompleted,
    SsoLogoutRequested,
)
from sortie_core.jwks import publish_signing_key
from sortie_core.runtime import WorkerParts
from sortie_core.steps import RetryPolicy
from sortie_core.subscription import command_subscription
from sortie_core.tasks import pause

from . import discovery, handlers
from .adapters import AppLogout, SsoSessions
from .adapters.http import CasRestSessions, HttpAppLogout
from .adapters.vault import RedisTicketVault
from .oidc import LogoutTokenSigner
from .registry import AppProtocol, Registry, load_registry
from .settings import EntSettings

log = logging.getLogger(__name__)

SERVICE = "ent-worker"

Build = Callable[[RedisBroker, Redis], Awaitable[WorkerParts]]


def read_registry(settings: EntSettings) -> Registry:
    if settings.registry_path is None:
        log.warning("no application registry (SORTIE_ENT_REGISTRY_PATH): every ticket is refused")
        return Registry()
    return load_registry(settings.registry_path)


async def keep_key_alive(redis: Redis, signer: LogoutTokenSigner, settings: EntSettings) -> bool:
    """Publish the signing key for another `oidc_key_ttl_s`; once it was retired, say so
    loudly and stop signing with it (returns False)."""
    alive = await publish_signing_key(
        redis,
        signer.public_jwk,
        grace_s=settings.oidc_key_grace_s,
        ttl_s=settings.oidc_key_ttl_s,
    )
    if not alive and not signer.retired:
        log.error(
            "OIDC signing key %s was RETIRED: no logout token is signed with it any more;"
            " oidc_bcl applications fail until this worker restarts with a new key"
            " (SORTIE_ENT_OIDC_SIGNING_KEY_PATH)",
            signer.kid,
        )
    signer.retired = not alive
    return alive


def key_heartbeat(
    redis: Redis, signer: LogoutTokenSigner, settings: EntSettings
) -> Callable[[], Awaitable[None]]:
    async def loop() -> None:
        while True:
            await pause(settings.oidc_key_ttl_s / 3)
            try:
                await keep_key_alive(redis, signer, settings)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("signing key not re-published (%s); retrying", exc)

    return loop


def make_signer(settings: EntSettings) -> LogoutTokenSigner | None:
    if settings.oidc_signing_key_path is None:
        return None
    return LogoutTokenSigner.from_file(
        settings.oidc_signing_key_path,
        issuer=settings.oidc_issuer,
        ttl_s=settings.oidc_token_ttl_s,
    )


def app_tokens(registry: Registry, environ: Mapping[str, str]) -> dict[str, SecretStr]:
    tokens: dict[str, SecretStr] = {}
    for app in registry.applications:
        if not app.token_env:
            continue
        value = environ.get(app.token_env)
        if not value and environ.get(f"{app.token_env}_FILE"):  # a compose/k8s secret
            value = Path(environ[f"{app.token_env}_FILE"]).read_text().strip()
        if value:
            tokens[app.name] = SecretStr(value)
        else:
            log.warning("%s: %s is not set; its logout steps will fail", app.name, app.token_env)
    return tokens


def cas_sessions(settings: EntSettings) -> CasRestSessions:
    return CasRestSessions(
        settings.cas_url,
        actuator=settings.cas_actuator_enabled,
        actuator_user=settings.cas_actuator_user,
        actuator_password=settings.cas_actuator_password,
        timeout_s=settings.cas_timeout_s,
    )


async def start_signing(
    redis: Redis, signer: LogoutTokenSigner | None, settings: EntSettings, reg: Registry
) -> list[Callable[[], Awaitable[None]]]:
    """Publish the logout-token signing key; the heartbeat that keeps it published."""
    if signer is None:
        if any(a.protocol is AppProtocol.OIDC_BCL for a in reg.applications):
            log.warning("no OIDC signing key: oidc_bcl applications will be skipped")
        return []
    if await keep_key_alive(redis, signer, settings):
        log.info("OIDC logout tokens signed with key %s", signer.kid)
    return [key_heartbeat(redis, signer, settings)]


def subscriptions(redis: Redis, run_apps: dict[str, Any]) -> list[Subscription]:
    """One subscription per command; `run_apps`: how the application logouts run."""
    reg: Registry = run_apps["registry"]

    async def on_logout(event: LogoutRequested, _: Delivery) -> RevocationCompleted | None:
        if event.sso_session_stored and event.sso_session is None:
            # Kept out of the stream (sortie_core.credentials); gone: the request ended.
            stored = await load_credentials(redis, event.request_id)
            event = event.model_copy(update={"sso_session": stored})
        return await handlers.handle_logout(event, **run_apps)

    async def on_offboard(event: OffboardRequested, _: Delivery) -> RevocationCompleted | None:
        return await handlers.handle_offboard(event, **run_apps)

    async def on_sso_logout(event: SsoLogoutRequested, _: Delivery) -> SsoLogoutCompleted:
        if event.tgt_stored and event.tgt is None:
            stored = await load_credentials(redis, event.request_id)
            event = event.model_copy(update={"tgt": stored.tgt if stored else None})
        # Its registry and application clients, for app_logout_first.
        return await handlers.handle_sso_logout(event, **run_apps)

    async def on_preview(event: PreviewRequested, _: Delivery) -> RevocationCompleted | None:
        return await discovery.preview(event, run_apps["sso"], reg)

    def on_deadletter(event: object, record: DeadLettered) -> BaseModel | None:
        if isinstance(event, PreviewRequested):
            return None
        return handlers.handle_deadlettered(event, record, reg)

    # stream, handler, what it accepts, where its report goes
    table: list[tuple[str, Handler, type[BaseModel], str]] = [
        (streams.LOGOUT_REQUESTED, on_logout, LogoutRequested, streams.REVOCATION_COMPLETED),
        (streams.OFFBOARD_REQUESTED, on_offboard, OffboardRequested, streams.REVOCATION_COMPLETED),
        (
            streams.SSO_LOGOUT_REQUESTED,
            on_sso_logout,
            SsoLogoutRequested,
            streams.SSO_LOGOUT_COMPLETED,
        ),
        (streams.PREVIEW_REQUESTED, on_preview, PreviewRequested, streams.PREVIEW_ANSWERED),
    ]
    return [
        command_subscription(stream, streams.GROUP_ENT, handler, accepts, publishes, on_deadletter)
        for stream, handler, accepts, publishes in table
    ]


def make_build(
    settings: EntSettings,
    *,
    registry: Registry | None = None,
    apps: AppLogout | None = None,
    sso: SsoSessions | None = None,
    signer: LogoutTokenSigner | None = None,
) -> Build:
    """Keyword arguments replace what settings would build (tests pass fakes)."""

    async def build(broker: RedisBroker, redis: Redis) -> WorkerParts:
        reg = registry if registry is not None else read_registry(settings)
        app_logout = apps or HttpAppLogout(app_tokens(reg, os.environ))
        cas = sso or cas_sessions(settings)
        if not settings.cas_actuator_enabled:
            log.warning(
                "no CAS ssoSessions actuator (SORTIE_ENT_CAS_ACTUATOR_ENABLED=false): sessions "
                "are not discovered and SSO logouts cannot be verified (requests end failed)"
            )
        log.info("application registry: %d applications", len(reg.applications))
        token_signer = signer or make_signer(settings)
        background = await start_signing(redis, token_signer, settings, reg)
        run_apps: dict[str, Any] = {
            "registry": reg,
            "apps": app_logout,
            "sso": cas,
            "policy": RetryPolicy.of(settings),
            "concurrency": settings.app_concurrency,
            "default_timeout_s": settings.app_timeout_s,
            "signer": token_signer,
            "vault": RedisTicketVault(redis, settings.kept_tickets_ttl_s),
        }
        return WorkerParts(
            subscriptions=subscriptions(redis, run_apps),
            background=background,
            on_stop=[app_logout.aclose, cas.aclose],
        )

    return build
