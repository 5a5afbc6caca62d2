"""Closing a user's browsers on a shared station: the browser keeps the SSO cookie and
the remembered profile, so it must not outlive the logout. First a clean close (the
browser saves and exits), then, after a grace period, a forced one."""

from __future__ import annotations

import asyncio
import re

from sortie_core.errors import PermanentError

from .commands import CommandFailed, Completed, first_lines, run

LINUX_BROWSERS = ("firefox", "firefox-esr", "chrome", "chromium", "chromium-browser", "msedge")
WINDOWS_BROWSERS = ("chrome.exe", "msedge.exe", "firefox.exe", "brave.exe", "opera.exe")
_ACCOUNT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@$-]{0,63}$")


def _failed(argv: list[str], done: Completed) -> CommandFailed:
    return CommandFailed(argv, done.returncode, first_lines(done.stderr or done.stdout))


def _checked(account: str) -> str:
    if not _ACCOUNT.fullmatch(account):
        raise PermanentError(f"invalid account name {account[:40]!r}", code="invalid_account")
    return account


async def close_browsers_linux(account: str, timeout_s: float, grace_s: float) -> str:
    pattern = "|".join(re.escape(b) for b in LINUX_BROWSERS)
    user = _checked(account)
    # pgrep/pkill exit 1 when nothing matched.
    argv = ["pkill", "-TERM", "-u", user, "-x", pattern]
    term = await run(argv, timeout_s=timeout_s, check=False)
    if term.returncode == 1:
        return "no browser open"
    if term.returncode != 0:
        raise _failed(argv, term)
    loop = asyncio.get_running_loop()
    until = loop.time() + grace_s
    while True:
        left = await run(["pgrep", "-u", user, "-x", pattern], timeout_s=timeout_s, check=False)
        if left.returncode == 1:
            return "browsers closed"
        if loop.time() >= until:
            break
        await asyncio.sleep(min(0.2, grace_s))
    await run(["pkill", "-KILL", "-u", user, "-x", pattern], timeout_s=timeout_s, check=False)
    return f"browsers forced to close after {grace_s:g}s"


def _taskkill(account: str, force: bool) -> list[str]:
    argv = ["taskkill", "/FI", f"USERNAME eq {account}"]
    for image in WINDOWS_BROWSERS:
        argv += ["/IM", image]
    return argv + (["/F"] if force else [])


async def close_browsers_windows(account: str, timeout_s: float, grace_s: float) -> str:
    user = _checked(account)
    # taskkill exits 128 when no process matched; without /F it asks windows to close.
    first = await run(_taskkill(user, False), timeout_s=timeout_s, check=False)
    if first.returncode == 128:
        return "no browser open"
    if first.returncode != 0:
        raise _failed(_taskkill(user, False), first)
    await asyncio.sleep(grace_s)
    forced = await run(_taskkill(user, True), timeout_s=timeout_s, check=False)
    if forced.returncode == 128:
        return "browsers closed"
    if forced.returncode != 0:
        raise _failed(_taskkill(user, True), forced)
    return f"browsers forced to close after {grace_s:g}s"
