"""A profile's compute quota across a server killed with SIGKILL: the charges live in
memory, so the restarted server holds what the stored pods that had not ended asked
for before it admits anything; a job created right after the restart waits for the
one that was running, which starts again in its place."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import httpx

from ketch.core import charges
from ketch.core.resource import Resource
from tests.jobs.conftest import manifest, replica
from tests.jobs.conftest import path as job_path
from tests.jobs.conftest import wait_for as wait_for_job
from tests.server.fixtures import SERVER_ENV
from tests.server.helpers import Server
from tests.tenancy.profiles import PROFILES, profile
from tests.waiting import wait_for

PY = sys.executable
QUOTA = "/api/v1/namespaces/{ns}/resourcequotas/kf-resource-quota"
NS = "team"


def _job(name: str, command: list[str]) -> dict[str, Any]:
    resources = {"requests": {"cpu": "1"}}
    return manifest("PyTorchJob", name, {"Master": replica(command, resources=resources)})


def _refusals(client: httpx.Client, name: str) -> list[str]:
    response = client.get(
        f"/api/v1/namespaces/{NS}/events",
        params={"fieldSelector": f"involvedObject.name={name}"},
    )
    return [e["message"] for e in response.json()["items"] if e["reason"] == "FailedCreate"]


def test_a_restarted_server_charges_what_ran_before_it_admits_anything(tmp_path: Path) -> None:
    home = tmp_path / "home"
    release = tmp_path / "release"
    holds = [
        PY,
        "-c",
        f"import os, time\nwhile not os.path.exists({str(release)!r}): time.sleep(0.05)",
    ]
    server = Server(home, extra_env=dict(SERVER_ENV)).start()
    try:
        with server.client() as client:
            created = client.post(
                PROFILES, json=profile(NS, resourceQuotaSpec={"hard": {"cpu": "1"}})
            )
            assert created.status_code == 201, created.text
            jobs = job_path("PyTorchJob", NS)
            assert client.post(jobs, json=_job("running", holds)).status_code == 201
            wait_for_job(client, "PyTorchJob", NS, "running", "Running")
    finally:
        server.stop(signal.SIGKILL)

    stored = Server(home).store()
    try:
        # what the store says ran: the job's pod, Running, asking for its CPU
        ledger = charges.QuotaLedger(charges.stored_claims(stored))
        assert ledger.used(NS)["requests.cpu"] == 1
        # a job that arrives while the server is down, reconciled first when it starts
        # again (its name comes first): it must not take the running job's place
        arrived = _job("arrived", [PY, "-c", "pass"])
        arrived["metadata"]["namespace"] = NS
        stored.create(Resource.from_manifest(arrived))
    finally:
        stored.database.dispose()

    server = Server(home, extra_env=dict(SERVER_ENV)).start()
    try:
        with server.client() as client:
            quota = client.get(QUOTA.format(ns=NS)).json()
            assert quota["status"]["used"] == {"cpu": "1"}
            refused = wait_for(lambda: _refusals(client, "arrived"), what="arrived refused")
            assert refused[0] == (
                'Error creating: pods "arrived-master-0" is forbidden: exceeded quota: '
                "kf-resource-quota, requested: cpu=1, used: cpu=1, limited: cpu=1"
            )
            wait_for_job(client, "PyTorchJob", NS, "running", "Running")
            assert _refusals(client, "running") == []
            release.touch()
            running = wait_for_job(client, "PyTorchJob", NS, "running", "Succeeded")
            arrived_done = wait_for_job(client, "PyTorchJob", NS, "arrived", "Succeeded")
            assert arrived_done["status"]["startTime"] >= running["status"]["completionTime"]
            wait_for(
                lambda: client.get(QUOTA.format(ns=NS)).json()["status"]["used"] == {"cpu": "0"},
                what="both jobs released",
            )
    finally:
        assert server.stop() == 0
