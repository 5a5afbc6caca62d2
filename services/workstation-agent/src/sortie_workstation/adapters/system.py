"""Session backends over the machine's own commands: Windows (`query session`, `logoff`,
`tsdiscon`), Windows MultiPoint (PowerShell `*-WmsSession`) and Linux (`loginctl`).

A command that fails is looked into once more: if the session is no longer listed it
was ended meanwhile (`NotFoundError`); otherwise the command's own message is reported.
"""

from __future__ import annotations

from sortie_core.errors import NotFoundError, PermanentError

from . import ActsOnSessions, Session, SessionAction, SessionId
from .browsers import close_browsers_linux, close_browsers_windows
from .commands import CommandFailed, first_lines, run
from .tables import (
    TableError,
    parse_loginctl_json,
    parse_loginctl_text,
    parse_windows_table,
    parse_wms_json,
)


class CommandSessions(ActsOnSessions):
    """What every command backend shares; subclasses say which command does what."""

    name = "commands"

    def __init__(self, *, timeout_s: float = 10.0, browser_grace_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self.browser_grace_s = browser_grace_s

    async def list_sessions(self) -> list[Session]:
        raise NotImplementedError

    def action_argv(self, action: SessionAction, session_id: str) -> list[str]:
        raise NotImplementedError

    async def _act(self, session_id: SessionId, action: SessionAction) -> None:
        sid = str(session_id)
        argv = self.action_argv(action, sid)
        try:
            await run(argv, timeout_s=self.timeout_s)
        except CommandFailed as err:
            if all(str(s.id) != sid for s in await self.list_sessions()):
                raise NotFoundError(f"session {sid} is gone ({err.output})") from err
            raise

    async def close_browsers(self, account: str) -> str:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


def _unsupported(backend: str, action: SessionAction, instead: str) -> PermanentError:
    return PermanentError(
        f"{backend} cannot {action.value} a session; set the policy to {instead}",
        code="unsupported_action",
    )


class WindowsSessions(CommandSessions):
    """`query session` (or `quser`) lists, `logoff` ends, `tsdiscon` disconnects. Windows
    has no command that locks another user's session."""

    name = "windows"

    def __init__(self, *, quser: bool = False, **kwargs: float) -> None:
        super().__init__(**kwargs)
        self.quser = quser

    async def list_sessions(self) -> list[Session]:
        argv = ["quser"] if self.quser else ["query", "session"]
        done = await run(argv, timeout_s=self.timeout_s, check=not self.quser)
        if self.quser and done.returncode != 0:
            if done.returncode == 1 and not done.stdout.strip():
                return []  # quser exits 1 with "No User exists for *" when nobody is logged on
            raise CommandFailed(argv, done.returncode, first_lines(done.stderr or done.stdout))
        try:
            return parse_windows_table(done.stdout, user_first=self.quser)
        except TableError as err:
            raise PermanentError(f"{argv[0]}: {err}", code="backend_bad_answer") from err

    def action_argv(self, action: SessionAction, session_id: str) -> list[str]:
        if action is SessionAction.LOGOFF:
            return ["logoff", session_id]
        if action is SessionAction.DISCONNECT:
            return ["tsdiscon", session_id]
        raise _unsupported("Windows", action, "logoff or disconnect")

    async def close_browsers(self, account: str) -> str:
        return await close_browsers_windows(account, self.timeout_s, self.browser_grace_s)


class MultiPointSessions(CommandSessions):
    """MultiPoint Services' PowerShell module, as its dashboard uses it."""

    name = "multipoint"

    def __init__(self, *, powershell: str = "powershell", **kwargs: float) -> None:
        super().__init__(**kwargs)
        self.powershell = powershell

    def _ps(self, script: str) -> list[str]:
        return [self.powershell, "-NoProfile", "-NonInteractive", "-Command", script]

    async def list_sessions(self) -> list[Session]:
        done = await run(
            self._ps(
                "Get-WmsSession | Select-Object SessionId,UserName,SessionState,StationId"
                " | ConvertTo-Json -Compress"
            ),
            timeout_s=self.timeout_s,
        )
        try:
            return parse_wms_json(done.stdout)
        except TableError as err:
            raise PermanentError(f"Get-WmsSession: {err}", code="backend_bad_answer") from err

    def action_argv(self, action: SessionAction, session_id: str) -> list[str]:
        verb = {
            SessionAction.LOGOFF: "Close-WmsSession",
            SessionAction.DISCONNECT: "Disconnect-WmsSession",
            SessionAction.LOCK: "Lock-WmsSession",
        }[action]
        confirm = " -Confirm:$false" if action is SessionAction.LOGOFF else ""
        return self._ps(f"{verb} -SessionId {int(session_id)}{confirm}")

    async def close_browsers(self, account: str) -> str:
        return await close_browsers_windows(account, self.timeout_s, self.browser_grace_s)


class LinuxSessions(CommandSessions):
    """systemd-logind through `loginctl`. There is no disconnected state on Linux."""

    name = "linux"

    async def list_sessions(self) -> list[Session]:
        done = await run(
            ["loginctl", "list-sessions", "--no-pager", "--output=json"],
            timeout_s=self.timeout_s,
            check=False,
        )
        if done.returncode == 0:
            try:
                return parse_loginctl_json(done.stdout)
            except TableError:
                pass
        # systemd before 250 knows no JSON here: read its table.
        text = await run(["loginctl", "list-sessions", "--no-pager"], timeout_s=self.timeout_s)
        return parse_loginctl_text(text.stdout)

    def action_argv(self, action: SessionAction, session_id: str) -> list[str]:
        if action is SessionAction.LOGOFF:
            return ["loginctl", "terminate-session", session_id]
        if action is SessionAction.LOCK:
            return ["loginctl", "lock-session", session_id]
        raise _unsupported("Linux", action, "logoff or lock")

    async def terminate_user(self, account: str) -> None:
        """Every session and process of `account` at once (offboarding)."""
        await run(["loginctl", "terminate-user", account], timeout_s=self.timeout_s)

    async def close_browsers(self, account: str) -> str:
        return await close_browsers_linux(account, self.timeout_s, self.browser_grace_s)
