"""docs/openapi.json and docs/asyncapi.json are what the code generates, and served."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import httpx

from tests.support.live import live_orchestrator

ROOT = Path(__file__).resolve().parents[3]


def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_api_docs", ROOT / "scripts/gen_api_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_documents_are_up_to_date() -> None:
    module = gen()
    for name, document in module.documents().items():
        committed = (ROOT / "docs" / name).read_text()
        assert committed == module.render(document), f"docs/{name} is stale: run {module.__file__}"


def test_documents_describe_the_api_and_the_streams() -> None:
    openapi = json.loads((ROOT / "docs/openapi.json").read_text())
    paths = openapi["paths"]
    scim = {"/scim/v2/Users", "/scim/v2/Users/{rid}", "/scim/v2/Groups", "/scim/v2/Groups/{rid}"}
    assert {"/v1/offboardings", "/v1/requests"} | scim <= set(paths)
    assert "effective_at" in json.dumps(paths["/v1/offboardings"]) or "OffboardIn" in json.dumps(
        openapi["components"]
    )
    asyncapi = json.loads((ROOT / "docs/asyncapi.json").read_text())
    assert asyncapi["asyncapi"].startswith("3.")
    channels = asyncapi["channels"]
    assert "revocation.completed:orchestrator" in channels
    assert "offboard.requested:m365-worker" in channels
    assert "agent.results.{host}:orchestrator" in channels
    assert "DeadLettered" in asyncapi["components"]["schemas"]
    assert {"RevocationCompleted", "StepResult", "OffboardRequested"} <= set(
        asyncapi["components"]["schemas"]
    )


def test_both_documents_are_served() -> None:
    with live_orchestrator() as url:
        served_openapi = httpx.get(f"{url}/openapi.json").json()
        served_asyncapi = httpx.get(f"{url}/asyncapi.json").json()
    committed = json.loads((ROOT / "docs/asyncapi.json").read_text())
    assert served_asyncapi == committed
    assert (
        served_openapi["paths"].keys()
        == json.loads((ROOT / "docs/openapi.json").read_text())["paths"].keys()
    )
