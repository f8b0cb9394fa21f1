"""Notebook start, side by side: Kubeflow's example Notebook applied to a real ``ketch up``
until ``/notebook/<ns>/<name>/api/status`` answers 200 through Ketch's proxy, against
``python -m jupyterlab`` started bare on this machine until its own ``api/status``
answers (target: at most 1.3x). Then a kernel's execute round trip (``1+1`` over the
websocket) through the proxy against the same server directly (target: at most 1.2x).
Rounds take turns; medians are printed with the ratios.

    .venv/bin/python benchmarks/notebook_start.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.jupyter_bare import BASE_URL, bare_start, until_200  # noqa: E402
from tests.notebooks.helpers import (  # noqa: E402
    example_notebook,
    execute,
    path,
    start_kernel,
)
from tests.server.fixtures import SERVER_ENV  # noqa: E402
from tests.server.helpers import Server  # noqa: E402

START_TARGET, ROUND_TRIP_TARGET = 1.3, 1.2
NS = "bench"


def ketch_start(http: httpx.Client, server: Server, name: str) -> float:
    began = time.perf_counter()
    made = http.post(path(NS), json=example_notebook(name, NS))
    assert made.status_code == 201, made.text
    until_200(f"{server.url}/notebook/{NS}/{name}/api/status", {})
    return time.perf_counter() - began


def median_round_trip(base: str, prefix: str, http: httpx.Client, headers: dict[str, str]) -> float:
    """The median of 30 ``1+1`` round trips over a kernel's websocket (seconds)."""
    kernel = start_kernel(http, prefix)
    execute(base, prefix, kernel, "1+1", headers)  # warm
    times = []
    for _ in range(30):
        began = time.perf_counter()
        execute(base, prefix, kernel, "1+1", headers)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "home", extra_env=SERVER_ENV).start()
        try:
            with server.client() as http:
                bare, ketch = [], []
                for index in range(rounds):
                    took, lab = bare_start(Path(tmp))
                    bare.append(took)
                    ketch.append(ketch_start(http, server, f"nb{index}"))
                    if index < rounds - 1:
                        lab.stop()
                        assert http.delete(path(NS, f"nb{index}")).status_code == 200
                prefix = f"/notebook/{NS}/nb{rounds - 1}/"
                proxied = median_round_trip(server.url, prefix, http, {})
                with httpx.Client(base_url=f"http://127.0.0.1:{lab.port}", headers=lab.auth) as own:
                    direct = median_round_trip(
                        str(own.base_url).rstrip("/"), BASE_URL, own, lab.auth
                    )
                lab.stop()
        finally:
            server.stop()
    b, k = statistics.median(bare), statistics.median(ketch)
    print(
        f"bare jupyter lab -> api/status 200:           median {b:.2f}s  ({', '.join(f'{t:.2f}' for t in bare)})"
    )
    print(
        f"ketch apply -> api/status 200 through proxy:  median {k:.2f}s  ({', '.join(f'{t:.2f}' for t in ketch)})"
    )
    print(f"ratio {k / b:.2f}x (target <= {START_TARGET}x)")
    print(
        f"kernel execute round trip: through the proxy {proxied * 1000:.1f} ms, "
        f"direct {direct * 1000:.1f} ms, ratio {proxied / direct:.2f}x "
        f"(target <= {ROUND_TRIP_TARGET}x)"
    )


if __name__ == "__main__":
    main()
