"""The orchestrator fixtures (a real redis-server behind the app) for the JWKS tests."""

from tests.orchestrator.conftest import client, orchestrator

__all__ = ["client", "orchestrator"]
