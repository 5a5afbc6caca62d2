"""`sortie offboard --profile`, `sortie reverse` and `sortie status` as a person runs them:
the real command in its own process against a live orchestrator; the test plays the
workers on the streams."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_sync

from sortie_core import streams
from sortie_core.sealed import seal
from sortie_testkit.redis_server import RedisServer
from tests.orchestrator.workers import answer_offboarding, report, step, until
from tests.support.live import TOKEN, live_orchestrator


@pytest.fixture(scope="module")
def base(server: RedisServer) -> Iterator[str]:
    with live_orchestrator(server) as url:
        yield url


def cli(base: str, tmp: Path, *args: str) -> tuple[list[str], dict[str, str]]:
    env = {
        **os.environ,
        "SORTIE_API_URL": base,
        "SORTIE_TOKEN": TOKEN,
        "SORTIE_WORKDIR": str(tmp / "none"),
        "NO_COLOR": "1",
    }
    return [sys.executable, "-m", "sortie_cli", *args], env


def run(base: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv, env = cli(base, tmp, *args)
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)


def reversal_of(url: str, original: str) -> dict[str, object] | None:
    client = redis_sync.Redis.from_url(url)
    try:
        for _, fields in client.xrange(streams.REVERSAL_REQUESTED):
            data: dict[str, object] = json.loads(fields[b"data"])
            if data["reverses"] == original:
                return data
    finally:
        client.close()
    return None


def test_offboard_with_a_profile_then_reverse_and_see_the_pass_once(
    base: str, server: RedisServer, tmp_path: Path
) -> None:
    upn = "lea.martin@lycee.example"
    off = run(base, tmp_path, "offboard", "lea.martin", "--upn", upn, "--profile", "suspend")
    assert off.returncode == 0, off.stderr
    assert "Offboarding of lea.martin (profile suspend) accepted: request " in off.stdout
    original = off.stdout.strip().rsplit(" ", 1)[1]
    answer_offboarding(
        server.url,
        original,
        [step("block_sign_in", {"account_enabled": True}), step("revoke_sessions")],
    )
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        until(lambda: api.get(f"/v1/requests/{original}").json()["status"] == "completed")
    argv, env = cli(base, tmp_path, "reverse", original, "--timeout", "30")
    pipe = subprocess.PIPE
    with subprocess.Popen(argv, stdout=pipe, stderr=pipe, text=True, env=env) as proc:
        command = until(lambda: reversal_of(server.url, original), 30, "reversal.requested")
        assert command["restore"] == {"block_sign_in": {"account_enabled": True}}
        report(
            server.url,
            str(command["request_id"]),
            "m365",
            [
                step("restore_block_sign_in"),
                step(
                    "issue_temporary_access_pass",
                    sealed=seal(str(command["tap_public_key"]), "Tap-Lea-42xy"),
                ),
            ],
        )
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"Reversal of {original}: request {command['request_id']}" in out
    assert "Temporary Access Pass for lea.martin@lycee.example (shown once): Tap-Lea-42xy" in out
    assert out.count("Tap-Lea-42xy") == 1 and "Tap-Lea-42xy" not in err
    status = run(base, tmp_path, "status", original)
    assert "Profile suspend" in status.stdout
    assert f"Reversed by {command['request_id']}" in status.stdout
    shown = run(base, tmp_path, "status", str(command["request_id"]))
    assert f"Reverses {original}" in shown.stdout and "Tap-Lea-42xy" not in shown.stdout
    again = run(base, tmp_path, "reverse", original)
    assert again.returncode == 1 and "already reversed" in again.stderr


def test_a_csv_row_names_its_profile(base: str, tmp_path: Path) -> None:
    file = tmp_path / "leavers.csv"
    file.write_text(
        "user_id,upn,profile\n"
        "prof.a,prof.a@lycee.example,staff-leaves\n"
        "eleve.b,eleve.b@lycee.example,pupil-leaves\n"
        "eleve.c,eleve.c@lycee.example,no-such-profile\n",
        encoding="utf-8",
    )
    bulk = run(base, tmp_path, "offboard", "--csv", str(file), "--rate", "50")
    assert bulk.returncode == 7, bulk.stdout + bulk.stderr
    with file.with_name("leavers.csv.results.csv").open(newline="") as f:
        results = {r["user_id"]: r for r in csv.DictReader(f)}
    assert (
        results["eleve.c"]["outcome"] == "refused"
        and "no-such-profile" in results["eleve.c"]["detail"]
    )
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        for user, profile in (("prof.a", "staff-leaves"), ("eleve.b", "pupil-leaves")):
            view = api.get(f"/v1/requests/{results[user]['request_id']}").json()
            assert view["profile"] == profile
