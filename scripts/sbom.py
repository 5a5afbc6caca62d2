"""Writes an SPDX 2.3 JSON software bill of materials for one image from `pip inspect`.

The Dockerfiles run it in their build stage (`pip inspect | python sbom.py --name …`), so each
image carries `/opt/venv/sbom.spdx.json` listing every distribution installed in it, with its
exact version and a package URL. Standard library only: it runs before anything is installed.

SPDX 2.3 fields as the specification requires them (spdx.github.io/spdx-spec/v2.3:
§6 document creation, §7 package information, §11 relationships); checked in the tests with
spdx-tools' validator. Licences are declared only from PEP 639 `License-Expression` metadata,
which is a valid SPDX expression by definition; anything else is NOASSERTION rather than a guess.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

NOASSERTION = "NOASSERTION"


def _spdx_id(name: str) -> str:
    # SPDXID: "SPDXRef-" then letters, digits, "." and "-" only (spec §7.2).
    return "SPDXRef-Package-" + re.sub(r"[^A-Za-z0-9.-]", "-", name)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _package(meta: dict[str, Any]) -> dict[str, Any]:
    name, version = meta["name"], meta["version"]
    licence = meta.get("license_expression") or NOASSERTION
    package: dict[str, Any] = {
        "name": name,
        "SPDXID": _spdx_id(_normalise(name)),
        "versionInfo": version,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": licence,
        "copyrightText": NOASSERTION,
        "externalRefs": [
            {
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": f"pkg:pypi/{_normalise(name)}@{version}",
            }
        ],
    }
    if meta.get("summary"):
        package["summary"] = meta["summary"]
    return package


def sbom(inspect: dict[str, Any], image: str, now: datetime | None = None) -> dict[str, Any]:
    """The SPDX document for the distributions of a `pip inspect` report."""
    created = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    seen: dict[str, dict[str, Any]] = {}
    for dist in inspect.get("installed", []):
        meta = dist["metadata"]
        seen.setdefault(_normalise(meta["name"]), _package(meta))
    packages = sorted(seen.values(), key=lambda p: p["SPDXID"])
    root = {
        "name": image,
        "SPDXID": "SPDXRef-Image",
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": "CONTAINER",
    }
    relationships = [
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": "SPDXRef-Image",
        }
    ] + [
        {
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": p["SPDXID"],
        }
        for p in packages
    ]
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{image} Python distributions",
        # Unique per document (spec §6.5); a URI that names no real host.
        "documentNamespace": f"urn:uuid:{uuid.uuid4()}",
        "creationInfo": {"created": created, "creators": ["Tool: sortie-sbom-1"]},
        "packages": [root, *packages],
        "relationships": relationships,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the image, e.g. sortie-orchestrator")
    parser.add_argument("inspect", nargs="?", help="pip inspect JSON file (default: stdin)")
    args = parser.parse_args(argv)
    if args.inspect:
        with open(args.inspect, encoding="utf-8") as f:
            report = json.load(f)
    else:
        report = json.load(sys.stdin)
    json.dump(sbom(report, args.name), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
