"""Prints the third-party requirements of the given pyproject.toml files, one a line, for
the Dockerfiles' dependency layer: installed from the pyproject files alone (with
constraints.txt) before the source is copied, so a change of the source reuses that
layer. Sortie's own packages (sortie-*) are left out: they are installed afterwards."""

from __future__ import annotations

import re
import sys
import tomllib


def requirements(paths: list[str]) -> list[str]:
    out: list[str] = []
    for path in paths:
        with open(path, "rb") as f:
            project = tomllib.load(f)["project"]
        for req in project.get("dependencies", []):
            name = re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower()
            if not name.startswith("sortie") and req not in out:
                out.append(req)
    return out


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1:])))
