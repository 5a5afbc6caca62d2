"""Typed settings shared by every service. Each service subclasses `ServiceSettings`
with its own env prefix; the Redis URL may also come from `SORTIE_REDIS_URL` or
`REDIS_URL`, which is what `sortie up` and docker-compose set once for all.

Every secret setting `X` (a `SecretStr` field, or one named in `file_settings`) can be
read from the file named by `X_FILE` instead (compose and Kubernetes secrets): the file
wins over `X`. The Redis password may come apart from the URL (`*REDIS_PASSWORD[_FILE]`),
so that a URL such as `redis://orchestrator@redis:6379/0` holds no secret.

`load_settings` turns a refused configuration into one line per problem and, with
`SORTIE_MODE=production`, refuses placeholders and what only a demo may leave out."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

# Values that env.example and the docs use as "fill me in".
PLACEHOLDERS = ("change-me", "<", "replace-me")


def redis_url_field(prefix: str) -> SecretStr:
    # A Redis URL can carry a password: it is a secret.
    return Field(  # type: ignore[no-any-return]
        default=SecretStr("redis://127.0.0.1:6379/0"),
        validation_alias=AliasChoices(f"{prefix}REDIS_URL", "SORTIE_REDIS_URL", "REDIS_URL"),
    )


def redis_password_field(prefix: str) -> SecretStr | None:
    return Field(  # type: ignore[no-any-return]
        default=None,
        validation_alias=AliasChoices(
            f"{prefix}REDIS_PASSWORD", "SORTIE_REDIS_PASSWORD", "REDIS_PASSWORD"
        ),
    )


def _shared(name: str) -> AliasChoices:
    """One variable for every service (`SORTIE_REDIS_<name>`), like `SORTIE_REDIS_URL`."""
    return AliasChoices(f"SORTIE_REDIS_{name}")


def env_names(cls: type[BaseSettings], name: str, field: FieldInfo) -> list[str]:
    """The environment variables a field is read from, as an operator writes them."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [c for c in alias.choices if isinstance(c, str)]
    if isinstance(alias, str):
        return [alias]
    return [f"{cls.model_config.get('env_prefix', '')}{name}".upper()]


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in get_args(annotation)


class SecretFiles(PydanticBaseSettingsSource):
    """`X_FILE` for every secret setting `X`: the file's text, without its final newline."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is done in __call__

    def __call__(self) -> dict[str, Any]:
        cls = self.settings_cls
        named = set(getattr(cls, "file_settings", ()))
        environ = {k.upper(): v for k, v in os.environ.items()}
        out: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            if not (_is_secret(field.annotation) or name in named):
                continue
            for env in env_names(cls, name, field):
                path = environ.get(f"{env.upper()}_FILE")
                if not path:
                    continue
                try:
                    text = Path(path).read_text(encoding="utf-8")
                except OSError as exc:
                    raise SettingsError(
                        [f"{env}_FILE: cannot read {path} ({exc.strerror})"]
                    ) from None
                value: Any = text.removesuffix("\n").removesuffix("\r")
                if self.field_is_complex(field):  # JSON, as it would be in the variable
                    value = self.decode_complex_value(name, field, value)
                out[name] = value
                break
        return out


def with_redis_password(url: str, password: str) -> str:
    """`url` with `password` for its user (`redis://user@host` → `redis://user:pw@host`)."""
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0] if userinfo else ""
    netloc = f"{user}:{quote(password, safe='')}@{hostport}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def sentinel_nodes(value: str) -> list[tuple[str, int]]:
    """`host:port,host:port` (IPv6 as `[::1]:26379`) as (host, port) pairs."""
    nodes = []
    for item in value.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item.strip()!r} is not host:port")
        nodes.append((host.removeprefix("[").removesuffix("]"), int(port)))
    return nodes


def default_consumer_name(service: str) -> str:
    return f"{service}-{socket.gethostname()}-{os.getpid()}"


class SettingsError(Exception):
    """A refused configuration: one line per problem, no secret value in any of them."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set `model_config` with their env prefix."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)
    # Non-`SecretStr` settings that may also come from `X_FILE`.
    file_settings: ClassVar[tuple[str, ...]] = ()

    # `production` refuses placeholders and demo-only shortcuts (see `production_problems`).
    mode: Literal["demo", "production"] = Field(
        default="demo", validation_alias=AliasChoices("SORTIE_MODE", "mode")
    )
    redis_url: SecretStr = Field(default=SecretStr("redis://127.0.0.1:6379/0"))
    # TLS to Redis (a `rediss://` URL): the CA that signed the server's certificate, and
    # this client's certificate and key when the server asks for one (`tls-auth-clients`).
    redis_ca_path: str | None = None
    redis_cert_path: str | None = None
    redis_key_path: str | None = None
    redis_password: SecretStr | None = redis_password_field("SORTIE_")
    # Redis Sentinel (docs/high-availability.md): `host:port,host:port,...`. The master of
    # `redis_sentinel_master` is asked of them and followed across failovers; the URL
    # then gives only the user, password, db and TLS (its host and port are not used).
    redis_sentinels: str | None = Field(default=None, validation_alias=_shared("SENTINELS"))
    redis_sentinel_master: str = Field(
        default="sortie", validation_alias=_shared("SENTINEL_MASTER")
    )
    # The sentinels' own user and password (`requirepass`/ACL of sentinel.conf), and TLS
    # to them (None: as the Redis URL, with the same CA and client certificate).
    redis_sentinel_username: str | None = Field(
        default=None, validation_alias=_shared("SENTINEL_USERNAME")
    )
    redis_sentinel_password: SecretStr | None = Field(
        default=None, validation_alias=_shared("SENTINEL_PASSWORD")
    )
    redis_sentinel_tls: bool | None = Field(default=None, validation_alias=_shared("SENTINEL_TLS"))
    # Redis Cluster (docs/high-availability.md): the URL names any node; scripts touch one
    # slot each, events leave a request's slot through its outbox and the relay.
    redis_cluster: bool = Field(default=False, validation_alias=_shared("CLUSTER"))
    consumer_name: str | None = None
    log_level: str = "INFO"
    log_json: bool = False
    # Port of the /metrics, /healthz and /readyz endpoints of a worker.
    http_host: str = "127.0.0.1"
    http_port: int = 0
    # Delivery guarantees (see broker.py).
    max_deliveries: int = Field(default=5, ge=1)
    claim_idle_ms: int = Field(default=15_000, ge=100)
    claim_interval_ms: int = Field(default=1_000, ge=50)
    # XREADGROUP's BLOCK: a new entry wakes the reader at once whatever it is; this only
    # sets how often an idle subscription asks again (each asking is a round trip, and a
    # process has up to five subscriptions idle most of the time).
    polling_interval_ms: int = Field(default=1_000, ge=1)
    concurrency: int = Field(default=32, ge=1, le=1024)
    # Entries larger than this (all fields) are dead-lettered `too_large`.
    max_entry_bytes: int = Field(default=1_048_576, ge=1024)
    # Redis connections per process (None: 2 x concurrency + 16 + intake connections) and
    # how long a command waits for a free one before failing (the intake then answers
    # 503). The wait is long enough for a busy process's own backlog: only a Redis that
    # stays saturated past it answers 503.
    redis_max_connections: int | None = Field(default=None, ge=4)
    redis_pool_timeout_s: float = Field(default=10.0, gt=0)
    # Connections reserved for HTTP requests that use Redis (the orchestrator's intake).
    redis_intake_connections: int = Field(default=0, ge=0)
    graceful_timeout_s: float = Field(default=15.0, ge=0)
    # Dead consumer names (idle this long, nothing pending) are removed from their groups.
    consumer_expiry_s: float | None = Field(default=3600.0, gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = SecretFiles(settings_cls)
        return init_settings, files, env_settings, dotenv_settings, file_secret_settings

    @model_validator(mode="after")
    def _redis_password_into_url(self) -> ServiceSettings:
        if self.redis_password is not None and self.redis_password.get_secret_value():
            url = with_redis_password(
                self.redis_url.get_secret_value(), self.redis_password.get_secret_value()
            )
            self.redis_url = SecretStr(url)
        return self

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_list(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        if value is not None:
            sentinel_nodes(value)  # refused here, with the bad item, rather than at connect
        return value

    @model_validator(mode="after")
    def _one_topology(self) -> ServiceSettings:
        if self.redis_cluster and self.redis_sentinels:
            raise ValueError("SORTIE_REDIS_CLUSTER and SORTIE_REDIS_SENTINELS exclude each other")
        return self

    def production_problems(self) -> list[str]:
        """What a production deployment may not leave as is; subclasses add their own."""
        problems = []
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            if isinstance(text, str) and any(p in text for p in PLACEHOLDERS):
                env = env_names(type(self), name, field)[0]
                problems.append(f"{env}: still the placeholder of env.example; set the real value")
        if "@" not in self.redis_url.get_secret_value():
            problems.append(
                "SORTIE_REDIS_URL: no Redis user; production Redis has `default` off "
                "(user in the URL, password in SORTIE_REDIS_PASSWORD_FILE)"
            )
        return problems


class WorkerSettings(ServiceSettings):
    """A service that runs revocation steps (the workers and the agent): how each step is
    retried inside its handler (`sortie_core.steps.RetryPolicy.of`)."""

    step_max_attempts: int = Field(default=4, ge=1)
    step_backoff_base_s: float = Field(default=0.2, ge=0)
    step_backoff_max_s: float = Field(default=5.0, ge=0)


S = TypeVar("S", bound=ServiceSettings)


def read_settings(cls: type[S]) -> S:
    """The settings, or `SettingsError` with one line per refused or missing value."""
    try:
        settings = cls()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else ""
            field = cls.model_fields.get(name)
            env = env_names(cls, name, field)[0] if field else name.upper()
            where = ".".join(str(p) for p in err["loc"][1:])
            lines.append(f"{env}{f' ({where})' if where else ''}: {err['msg']}")
        raise SettingsError(lines) from None
    if settings.mode == "production":
        problems = settings.production_problems()
        if problems:
            raise SettingsError(problems)
    return settings


def load_settings(cls: type[S]) -> S:
    """`read_settings` for a process entrypoint: a refused configuration exits with code
    2 after one line per problem on stderr, instead of a traceback."""
    try:
        return read_settings(cls)
    except SettingsError as exc:
        for line in exc.lines:
            print(f"configuration: {line}", file=sys.stderr)
        raise SystemExit(2) from None
