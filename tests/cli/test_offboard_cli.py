"""`sortie offboard`, `status`, `requests` as a script would run them: the real command in
its own process against a real orchestrator, checking output and exit codes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from sortie_testkit.waiting import wait_until
from tests.support.live import TOKEN, live_orchestrator


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with live_orchestrator() as url:
        yield url


def sortie(
    base: str, tmp: Path, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SORTIE_API_URL": base,
        "SORTIE_TOKEN": TOKEN,
        "SORTIE_WORKDIR": str(tmp / "none"),
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "sortie_cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def api(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"})


def test_offboard_now_then_list_by_user(base: str, tmp_path: Path) -> None:
    run = sortie(base, tmp_path, "offboard", "emma.roux", "--upn", "emma.roux@lycee.example")
    assert run.returncode == 0, run.stderr
    assert "Offboarding of emma.roux accepted: request " in run.stdout
    rid = run.stdout.strip().rsplit(" ", 1)[1]
    listed = sortie(base, tmp_path, "requests", "--user", "emma.roux")
    assert listed.returncode == 0
    assert listed.stdout.startswith(rid) and "offboard" in listed.stdout
    assert "emma.roux" in listed.stdout
    assert sortie(base, tmp_path, "requests", "--user", "nobody.else").stdout == ""


def test_offboard_at_a_time_is_scheduled(base: str, tmp_path: Path) -> None:
    run = sortie(base, tmp_path, "offboard", "hugo.blanc", "--at", "+2h")
    assert run.returncode == 0, run.stderr
    assert "scheduled for " in run.stdout
    rid = run.stdout.strip().rsplit(" ", 1)[1]
    with api(base) as c:
        view = c.get(f"/v1/requests/{rid}").json()
    assert view["status"] == "scheduled"
    lead = datetime.fromisoformat(view["effective_at"]) - datetime.fromisoformat(view["created_at"])
    assert 7100 < lead.total_seconds() < 7300
    # `status` of a request that has not ended: exit code 6.
    status = sortie(base, tmp_path, "status", rid)
    assert status.returncode == 6 and "scheduled" in status.stdout


def test_offboard_wait_reports_steps_and_the_outcome(base: str, tmp_path: Path) -> None:
    # No worker runs beside this orchestrator: every step times out and it fails (4).
    run = sortie(base, tmp_path, "offboard", "ines.faure", "--wait", "--timeout", "20")
    assert run.returncode == 4, run.stdout + run.stderr
    assert "timed_out" in run.stdout and "failed" in run.stdout
    assert "Phase 2" in run.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["offboard", "x", "--at", "next tuesday"], 2, "cannot read the time"),
        (["offboard", "x", "--at", "9999-01-01T00:00:00+00:00"], 1, "days ahead"),
        (["offboard"], 2, "either USER or --csv"),
        (["offboard", "x", "--csv", "f.csv"], 2, "either USER or --csv"),
        (["status", "00000000-0000-0000-0000-000000000000"], 1, "404"),
    ],
)
def test_errors_have_distinct_exit_codes(
    base: str, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    run = sortie(base, tmp_path, *args)
    assert run.returncode == code, run.stdout + run.stderr
    assert message in run.stderr


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["user_id", "upn", "effective_at", "reason"])
        writer.writeheader()
        writer.writerows(rows)


def read_results(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_bulk_csv_paces_reports_each_row_and_reruns_safely(base: str, tmp_path: Path) -> None:
    rows = [
        {"user_id": f"eleve{i:03d}", "upn": f"eleve{i:03d}@lycee.example", "effective_at": "+1d"}
        for i in range(60)
    ]
    rows.insert(10, {"user_id": "", "upn": "nobody@lycee.example", "effective_at": ""})
    rows.insert(20, {"user_id": "bad.upn", "upn": "not an address", "effective_at": ""})
    file = tmp_path / "june.csv"
    write_csv(file, rows)
    started = time.monotonic()
    run = sortie(base, tmp_path, "offboard", "--csv", str(file), "--rate", "40")
    elapsed = time.monotonic() - started
    assert run.returncode == 7, run.stdout + run.stderr
    # 61 submissions at 40 per second take at least 1.5 s.
    assert elapsed >= 1.5
    assert "62/62 (100%)" in run.stderr
    results = read_results(tmp_path / "june.csv.results.csv")
    assert len(results) == 62
    by_user = {r["user_id"]: r for r in results}
    assert by_user[""]["outcome"] == "refused" and by_user[""]["detail"] == "user_id is empty"
    assert by_user["bad.upn"]["outcome"] == "refused" and by_user["bad.upn"]["http_status"] == "422"
    assert by_user["eleve000"]["outcome"] == "scheduled" and by_user["eleve000"]["request_id"]
    assert "60 scheduled" in run.stdout and "2 refused" in run.stdout
    with api(base) as c:
        scheduled = c.get("/v1/requests", params={"status": "scheduled", "limit": 200}).json()
    ids = {i["request_id"] for i in scheduled["items"]}
    assert {r["request_id"] for r in results if r["request_id"]} <= ids
    # The same file again: every row is recognised, nothing starts twice.
    again = sortie(base, tmp_path, "offboard", "--csv", str(file), "--rate", "200")
    assert again.returncode == 7
    rerun = read_results(tmp_path / "june.csv.results.csv")
    assert sum(r["outcome"] == "replayed" for r in rerun) == 60
    assert [r["request_id"] for r in rerun if r["request_id"]] == [
        r["request_id"] for r in results if r["request_id"]
    ]


def test_bulk_never_has_more_than_max_in_flight_running(base: str, tmp_path: Path) -> None:
    file = tmp_path / "now.csv"
    write_csv(
        file,
        [{"user_id": f"wave{i}", "upn": "", "effective_at": "", "reason": ""} for i in range(9)],
    )
    run = sortie(
        base, tmp_path, "offboard", "--csv", str(file), "--rate", "500", "--max-in-flight", "3"
    )
    assert run.returncode == 0, run.stdout + run.stderr
    with api(base) as c:
        views = [
            c.get(f"/v1/requests/{r['request_id']}").json()
            for r in read_results(tmp_path / "now.csv.results.csv")
        ]

    def all_finished() -> list[dict] | None:
        with api(base) as c:
            current = [c.get(f"/v1/requests/{v['request_id']}").json() for v in views]
        return current if all(v["finished_at"] for v in current) else None

    views = wait_until(all_finished, 10, 0.1, "every request finished")
    spans = [
        (datetime.fromisoformat(v["created_at"]), datetime.fromisoformat(v["finished_at"]))
        for v in views
    ]
    overlap = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert overlap <= 3


def test_bulk_refuses_a_file_without_user_id(base: str, tmp_path: Path) -> None:
    file = tmp_path / "wrong.csv"
    file.write_text("name,mail\nx,y\n")
    run = sortie(base, tmp_path, "offboard", "--csv", str(file))
    assert run.returncode == 2 and "user_id column" in run.stderr
    missing = sortie(base, tmp_path, "offboard", "--csv", str(tmp_path / "absent.csv"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_status_watch_follows_until_the_end(base: str, tmp_path: Path) -> None:
    with api(base) as c:
        rid = c.post("/v1/offboardings", json={"subject": {"user_id": "watch.me"}}).json()[
            "request_id"
        ]
    run = sortie(base, tmp_path, "status", rid, "--watch", "--timeout", "20")
    # Without workers it times out and fails: exit code 4, with every step shown.
    assert run.returncode == 4, run.stdout + run.stderr
    assert f"Request {rid}  offboard  failed" in run.stdout
    assert run.stdout.count("timed_out") >= 5
