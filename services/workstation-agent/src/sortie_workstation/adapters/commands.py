"""Running the machine's session commands (`query`, `logoff`, `loginctl`, PowerShell).

Every command runs with a timeout and without a shell. A command that cannot be started
or that exits non-zero raises `CommandFailed` carrying the command's own message, which
the backend turns into `NotFoundError` (the session is gone) or `PermanentError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass

from sortie_core.errors import PermanentError, TransientError

MAX_MESSAGE = 500


class CommandFailed(PermanentError):
    def __init__(self, argv: list[str], returncode: int, message: str) -> None:
        super().__init__(
            f"`{' '.join(argv[:3])}` exited {returncode}: {message}", code="command_failed"
        )
        self.returncode = returncode
        self.output = message


@dataclass(frozen=True, slots=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


def _text(raw: bytes) -> str:
    # Windows consoles write in the OEM code page; French `query` prints accented headers.
    for encoding in ("utf-8", "cp850"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def first_lines(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(lines)[:MAX_MESSAGE] or "no message"


async def run(argv: list[str], *, timeout_s: float, check: bool = True) -> Completed:
    """Run `argv`; `check` raises `CommandFailed` on a non-zero exit."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "LC_ALL": os.environ.get("LC_ALL", "C.UTF-8")},
        )
    except FileNotFoundError as err:
        raise PermanentError(f"`{argv[0]}` is not installed", code="command_missing") from err
    except PermissionError as err:
        raise PermanentError(f"`{argv[0]}` cannot be run", code="command_denied") from err
    try:
        out, err_out = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError as err:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise TransientError(
            f"`{' '.join(argv[:3])}` did not answer within {timeout_s:g}s",
            code="command_timeout",
        ) from err
    done = Completed(proc.returncode or 0, _text(out), _text(err_out))
    if check and done.returncode != 0:
        raise CommandFailed(argv, done.returncode, first_lines(done.stderr or done.stdout))
    return done
