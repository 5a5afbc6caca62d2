"""Debian's Chromium, headless, as a helpdesk agent's browser."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def headless(profile: Path) -> list[str]:
    """The command line of a headless Chromium with its own profile, quiet on the network."""
    binary = shutil.which("chromium")
    if binary is None:
        raise RuntimeError("chromium is not installed: run scripts/bootstrap-test.sh")
    return [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ]


def chromium(profile: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cmd = [*headless(profile), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
