"""`python -m sortie_simulators <graph|cas|entapps|workstations|oidc> [options]`: run one simulator.

It logs `listening on http://HOST:PORT` to stderr once it accepts connections (with
`--port 0`, the port the system chose) and stops cleanly on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

from . import cas, entapps, graph, oidc_provider, workstations
from .common import serve
from .demo import DEFAULT_ENTAPPS_URL, DEFAULT_PORTS

ACTUATOR_PASSWORD_ENV = "SORTIE_SIM_CAS_ACTUATOR_PASSWORD"
# A client of the OpenID provider, ID:SECRET:REDIRECT_URI, kept off the command line.
OIDC_CLIENT_ENV = "SORTIE_SIM_OIDC_CLIENT"


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _app_spec(text: str) -> tuple[str, str]:
    name, sep, protocol = text.partition(":")
    if not sep or not entapps.APP_NAME.fullmatch(name) or protocol not in entapps.PROTOCOLS:
        raise argparse.ArgumentTypeError(
            f"expected NAME:PROTOCOL with PROTOCOL one of {', '.join(entapps.PROTOCOLS)}"
        )
    return name, protocol


def _client_id_spec(text: str) -> tuple[str, str]:
    name, sep, client_id = text.partition("=")
    if not sep or not entapps.APP_NAME.fullmatch(name) or not client_id:
        raise argparse.ArgumentTypeError("expected NAME=CLIENT_ID")
    return name, client_id


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sortie_simulators", description="Run one of Sortie's protocol simulators."
    )
    subs = parser.add_subparsers(dest="simulator", required=True, metavar="SIMULATOR")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = subs.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--host", default="127.0.0.1", help="address to bind (default %(default)s)"
        )
        sub.add_argument(
            "--port",
            type=int,
            default=DEFAULT_PORTS[name],
            help="port to listen on, 0 for any free one (default %(default)s)",
        )
        sub.add_argument(
            "--seed-demo", action="store_true", help="load the demo users and sessions"
        )
        sub.add_argument(
            "--latency-ms",
            type=_non_negative,
            default=0.0,
            help="added to every API call, in milliseconds (default 0)",
        )
        sub.add_argument(
            "--log-level",
            default="warning",
            choices=["critical", "error", "warning", "info", "debug", "trace"],
            help="uvicorn log level (default warning)",
        )
        return sub

    g = add("graph", "Microsoft Graph (users, revokeSignInSessions, $batch)")
    g.add_argument(
        "--error-rate",
        type=_fraction,
        default=0.0,
        help="fraction of operations answered 503 ServiceUnavailable (default 0)",
    )
    g.add_argument(
        "--throttle-writes-per-s",
        type=_non_negative,
        default=None,
        help="writes/s per application and tenant (PATCH, revoke; per batch item); 429 beyond",
    )
    g.add_argument(
        "--throttle-tenant-writes-per-s",
        type=_non_negative,
        default=None,
        help="writes/s per tenant, all applications together; 429 beyond",
    )
    g.add_argument("--random-seed", type=int, default=None, help="seed of the error injection")

    c = add("cas", "Apereo CAS (REST tickets API, ssoSessions actuator)")
    c.add_argument(
        "--entapps-url",
        default=DEFAULT_ENTAPPS_URL,
        help="base URL of the ENT apps simulator, for demo service URLs (default %(default)s)",
    )
    c.add_argument("--actuator-user", default=None, help="require HTTP Basic auth on the actuator")
    c.add_argument(
        "--actuator-password",
        default=os.environ.get(ACTUATOR_PASSWORD_ENV),
        help=f"the actuator password (or ${ACTUATOR_PASSWORD_ENV})",
    )

    e = add("entapps", "ENT applications (CAS SLO, OIDC back-channel logout, HTTP logout)")
    e.add_argument(
        "--app",
        dest="apps",
        action="append",
        type=_app_spec,
        default=[],
        metavar="NAME:PROTOCOL",
        help=f"an application (repeatable); PROTOCOL one of {', '.join(entapps.PROTOCOLS)}",
    )
    e.add_argument(
        "--fail-app",
        dest="fail_apps",
        action="append",
        default=[],
        metavar="NAME",
        help="this application answers 503 (repeatable)",
    )
    e.add_argument(
        "--jwks-url",
        default=None,
        help="oidc_bcl apps verify logout tokens against this JWKS (default: not verified)",
    )
    e.add_argument(
        "--oidc-issuer",
        default=None,
        help="the `iss` they expect (default: the JWKS URL without /.well-known/jwks.json)",
    )
    e.add_argument(
        "--client-id",
        dest="client_ids",
        action="append",
        type=_client_id_spec,
        default=[],
        metavar="NAME=CLIENT_ID",
        help="the `aud` an oidc_bcl app expects (default: its name; repeatable)",
    )

    w = add("workstations", "workstation session backend for many hosts")
    w.add_argument(
        "--hosts", type=int, default=0, help="create hosts pc-0001..pc-N without sessions"
    )
    o = add("oidc", "OpenID Connect provider (code flow with PKCE, RS256 id_token)")
    o.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="ID:SECRET:REDIRECT_URI",
        help="a registered client (repeatable), e.g. sortie-console:s3cret:http://127.0.0.1:8080/ui/login/oidc"
        f" (one more from ${OIDC_CLIENT_ENV})",
    )
    return parser


def _clients(specs: list[str]) -> dict[str, tuple[str, list[str]]]:
    out: dict[str, tuple[str, list[str]]] = {}
    for spec in specs:
        client_id, _, rest = spec.partition(":")
        secret, _, redirect = rest.partition(":")
        out.setdefault(client_id, (secret, []))[1].append(redirect)
    return out


def build_app(args: argparse.Namespace) -> Any:
    builders: dict[str, Callable[[], Any]] = {
        "graph": lambda: graph.create_app(
            seed_demo=args.seed_demo,
            latency_ms=args.latency_ms,
            error_rate=args.error_rate,
            throttle_writes_per_s=args.throttle_writes_per_s,
            throttle_tenant_writes_per_s=args.throttle_tenant_writes_per_s,
            random_seed=args.random_seed,
        ),
        "cas": lambda: cas.create_app(
            seed_demo=args.seed_demo,
            entapps_url=args.entapps_url,
            actuator_user=args.actuator_user,
            actuator_password=args.actuator_password,
            latency_ms=args.latency_ms,
        ),
        "entapps": lambda: entapps.create_app(
            apps=args.apps,
            seed_demo=args.seed_demo,
            latency_ms=args.latency_ms,
            fail_apps=args.fail_apps,
            jwks_url=args.jwks_url,
            oidc_issuer=args.oidc_issuer,
            client_ids=dict(args.client_ids),
        ),
        "oidc": lambda: oidc_provider.create_app(
            clients=_clients([*args.client, *filter(None, [os.environ.get(OIDC_CLIENT_ENV)])]),
            seed_demo=args.seed_demo,
        ),
        "workstations": lambda: workstations.create_app(
            seed_demo=args.seed_demo, hosts=args.hosts, latency_ms=args.latency_ms
        ),
    }
    return builders[args.simulator]()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.simulator == "cas" and args.actuator_user and not args.actuator_password:
        parser.error(
            "--actuator-user needs --actuator-password (or $" + ACTUATOR_PASSWORD_ENV + ")"
        )
    if args.simulator == "workstations" and args.hosts < 0:
        parser.error("--hosts must be >= 0")
    try:
        app = build_app(args)
    except ValueError as exc:
        parser.error(str(exc))
    serve(app, name=args.simulator, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
