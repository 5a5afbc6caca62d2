"""The images' SBOM: scripts/sbom.py turns `pip inspect` into SPDX 2.3 JSON that the SPDX
project's own validator (spdx-tools) accepts, listing what is installed at the pinned
versions; every Dockerfile writes it in its build stage, into the venv the image keeps."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("orchestrator", "m365-worker", "ent-worker", "workstation-agent")


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Path:
    inspect = subprocess.run(
        [sys.executable, "-m", "pip", "inspect"], check=True, capture_output=True, text=True
    ).stdout
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/sbom.py"), "--name", "sortie-test"],
        input=inspect,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = tmp_path_factory.mktemp("sbom") / "sbom.spdx.json"
    path.write_text(out)
    return path


def test_the_spdx_validator_accepts_it(document: Path) -> None:
    messages = validate_full_spdx_document(parse_file(str(document)))
    assert messages == [], [m.validation_message for m in messages]


def test_it_lists_the_pinned_versions(document: Path) -> None:
    pins = dict(
        line.split("==", 1)
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    doc = json.loads(document.read_text())
    versions = {p["name"].lower(): p.get("versionInfo") for p in doc["packages"]}
    for name in ("faststream", "redis", "pydantic", "httpx", "msgraph-sdk"):
        assert versions[name] == pins[name], name
    purls = [r["referenceLocator"] for p in doc["packages"] for r in p.get("externalRefs", [])]
    assert f"pkg:pypi/faststream@{pins['faststream']}" in purls
    # Every package is contained in the image the document describes.
    contained = {
        r["relatedSpdxElement"] for r in doc["relationships"] if r["relationshipType"] == "CONTAINS"
    }
    assert contained == {p["SPDXID"] for p in doc["packages"] if p["SPDXID"] != "SPDXRef-Image"}


@pytest.mark.parametrize("service", SERVICES)
def test_every_image_writes_its_sbom(service: str) -> None:
    text = (ROOT / f"services/{service}/Dockerfile").read_text()
    build, _, final = text.rpartition("\nFROM ")
    assert "scripts/sbom.py" in build
    assert re.search(
        rf"pip inspect \| python sbom\.py --name sortie-{service} > /opt/venv/sbom\.spdx\.json",
        build,
    )
    # The final stage keeps the venv, SBOM included.
    assert "COPY --from=build /opt/venv /opt/venv" in final
