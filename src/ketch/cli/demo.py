"""``ketch demo``: the platform tour.

It starts ``ketch up`` (embedded SQLite, in a Ketch home of its own) on 127.0.0.1:8808,
or on a free port when that one is taken, and drives it as a user would: it submits
the tour pipeline (:mod:`ketch.cli.tour_pipeline`: prepare data, tune with a Katib
Experiment, train, evaluate with Metrics and ClassificationMetrics, register the model
when it beats the live version) with the real ``kfp.Client``, follows its tasks and
trials, deploys the registered version from the model registry as an InferenceService
(``model-registry://<model>/<version>``), sends it a V2 inference request, and says
where to look in the dashboard. Then it keeps serving until Ctrl-C when standard input
is a terminal, or stops the server and exits 0 when it is not. Any failure says what
failed, shows the end of the server's log and exits 1.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from ketch.core import config

if TYPE_CHECKING:
    import httpx
    from rich.console import Console

#: the InferenceService the tour deploys
SERVICE = "breast-cancer"
NAMESPACE = "default"
#: what the tour needs besides Ketch itself: module, distribution
_NEEDS = {
    "sklearn": "scikit-learn",
    "pandas": "pandas",
    "joblib": "joblib",
    "model_registry": "model-registry",
    "orjson": "orjson",
}
_READY = "Ketch API server listening on "
_RUNS = "/apis/pipelines.ketch.dev/v1/namespaces/{ns}/pipelineruns"
_KATIB = "/apis/kubeflow.org/v1beta1/namespaces/{ns}"
_ISVC = "/apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices"
_STYLE = {
    "SUCCEEDED": "green",
    "Succeeded": "green",
    "FAILED": "bold red",
    "Failed": "bold red",
    "RUNNING": "cyan",
    "Running": "cyan",
    "CANCELED": "yellow",
    "SKIPPED": "dim",
}
_FINISHED = ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED")
_LABELS = ("malignant", "benign")  # targets 0 and 1 of the breast-cancer data set


class TourFailed(Exception):
    """A step of the tour failed: ``str()`` says which and why; ``detail`` shows more."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


def demo(
    port: Annotated[
        int,
        typer.Option(
            "--port", help="Port for the server (a free one when taken; 0 picks any free one)"
        ),
    ] = config.DEFAULT_PORT,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="The tour's KETCH_HOME: its SQLite store, artifacts and logs (default ~/.ketch-demo)",
        ),
    ] = None,
    trials: Annotated[
        int, typer.Option("--trials", min=1, max=20, help="Trials of the Katib experiment")
    ] = 4,
) -> None:
    """Tour the platform: start a server, run a pipeline that tunes, trains, evaluates and
    registers a model, serve it from the registry, query it, and keep serving until
    Ctrl-C (or, without a terminal on standard input, stop once the tour succeeded)."""
    missing = [dist for module, dist in _NEEDS.items() if not _installed(module)]
    if missing:
        typer.echo(
            f"error: the tour needs {', '.join(missing)}: pip install 'ketch[demo]'", err=True
        )
        raise typer.Exit(2)
    if not 0 <= port <= 65535:
        typer.echo(f"error: --port: {port} is not a port number (0-65535)", err=True)
        raise typer.Exit(2)
    home = (home or Path.home() / ".ketch-demo").expanduser().resolve()
    tour = Tour(home, port, trials)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # stopped: stop the server too
    try:
        code = tour.main()
    finally:
        signal.signal(signal.SIGTERM, previous)
    raise typer.Exit(code)


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


class Terminated(KeyboardInterrupt):
    """The tour was sent SIGTERM (its server was not)."""


def _interrupt(_sig: int, _frame: Any) -> NoReturn:
    raise Terminated


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ready(service: dict[str, Any]) -> bool:
    """Whether the InferenceService serves its current spec: observed, rolled out, Ready."""
    status = service.get("status") or {}
    if status.get("observedGeneration") != (service.get("metadata") or {}).get("generation"):
        return False
    predictor = (status.get("components") or {}).get("predictor") or {}
    if predictor.get("latestRolledoutRevision") != predictor.get("latestCreatedRevision"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def _styled(state: str) -> str:
    """``state`` in its colour, as rich markup."""
    style = _STYLE.get(state)
    return f"[{style}]{state}[/]" if style else state


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _wait(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.4) -> Any:
    """``check()`` once it is truthy; ``TourFailed`` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TourFailed(f"{what} did not happen within {timeout:g} s")
        time.sleep(interval)


class Tour:
    """The tour's steps, against the server it starts."""

    def __init__(self, home: Path, port: int, trials: int) -> None:
        from rich.console import Console

        self.home = home
        self.port = port
        self.trials = trials
        self.console: Console = Console(highlight=False, soft_wrap=True)
        self.interactive = self.console.is_terminal
        self.log_path = home / "demo-server.log"
        self.server: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.started = time.monotonic()
        #: Ctrl-C was pressed (the terminal signalled the server as well)
        self.interrupted = False

    # -- the tour ----------------------------------------------------------------------

    def main(self) -> int:
        """Run the tour; the exit code."""
        try:
            self.start_server()
            with self.http() as api:
                run_id, experiment, outcome = self.run_pipeline(api)
                service_url = self.deploy(api, outcome)
                predicted, actual = self.query(service_url)
            self.where_to_look(run_id, experiment, outcome, service_url)
            self.say(
                f"[bold green]Tour complete[/]: run {run_id} SUCCEEDED; "
                f"{outcome['model']} {outcome['version']} serves as {SERVICE} and "
                f"predicted {', '.join(predicted)} (actual: {', '.join(actual)})"
            )
            if sys.stdin is not None and sys.stdin.isatty():
                self.console.print(
                    f"\nServing on {self.url} — press Ctrl-C to stop. Later, "
                    f"`ketch up --home {self.home}` brings it all back.",
                    markup=False,
                )
                try:
                    self.serve_until_interrupted()
                except KeyboardInterrupt as exc:
                    self.say("\nstopping the server")
                    self.interrupted = not isinstance(exc, Terminated)
            return 0
        except TourFailed as exc:
            self.fail(str(exc), exc.detail)
            return 1
        except KeyboardInterrupt as exc:
            self.say("\n[yellow]interrupted[/]: stopping the server")
            self.interrupted = not isinstance(exc, Terminated)
            return 130
        except Exception as exc:  # noqa: BLE001 - a bug: said, with the server's log, not a bare traceback
            import traceback

            self.fail(f"the tour stopped on an unexpected error: {exc!r}", traceback.format_exc())
            return 1
        finally:
            self.stop_server()

    def say(self, text: str) -> None:
        self.console.print(text)

    def step(self, text: str) -> None:
        self.console.print(f"\n[bold]{text}[/]")

    def elapsed(self) -> str:
        return f"[dim]{time.monotonic() - self.started:6.1f}s[/]"

    # -- the server ----------------------------------------------------------------------

    def start_server(self) -> None:
        port = self.port
        if port and not _port_free(port):
            self.say(f"port {port} is taken: the server takes a free one")
            port = 0
        self.home.mkdir(parents=True, exist_ok=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("KETCH_URL", "KETCH_TOKEN", "KETCH_DATABASE_URL", "KETCH_ARTIFACTS")
        }
        env["KETCH_HOME"] = str(self.home)
        env.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
        command = [sys.executable, "-m", "ketch.cli.main", "up", "--home", str(self.home)]
        self.step("Ketch platform tour")
        self.console.print(
            f"  starting ketch up (SQLite in {self.home}), its log in {self.log_path}",
            markup=False,
        )
        with open(self.log_path, "wb") as log:
            self.server = subprocess.Popen(
                [*command, "--port", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

        def listening() -> str | None:
            assert self.server is not None
            text = self.log_path.read_text(errors="replace")
            for line in text.splitlines():
                if line.startswith(_READY):
                    return line.removeprefix(_READY).strip()
            if self.server.poll() is not None:
                raise TourFailed(
                    f"ketch up exited with status {self.server.returncode}",
                    "When another server holds this Ketch home, stop it or give the tour "
                    "another --home.",
                )
            return None

        self.url = _wait(listening, 120, "ketch up listening", 0.1)
        self.say(f"  server listening on [bold]{self.url}[/] {self.elapsed()}")

    def stop_server(self) -> None:
        """Stop the server as Ctrl-C stops ``ketch up``: it stops what it started."""
        server, self.server = self.server, None
        if server is None:
            return
        if self.interrupted:  # Ctrl-C reached the server too: it is stopping already
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(20)
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    def serve_until_interrupted(self) -> None:
        assert self.server is not None
        code = self.server.wait()
        if code != 0:
            raise TourFailed(f"the server stopped with status {code}")

    @contextlib.contextmanager
    def http(self) -> Iterator[httpx.Client]:
        import httpx

        with httpx.Client(base_url=self.url, timeout=30) as client:
            yield client

    def fail(self, message: str, detail: str) -> None:
        from rich.console import Console
        from rich.markup import escape

        err = Console(stderr=True, highlight=False, soft_wrap=True)
        err.print(f"\n[bold red]error[/]: {escape(message)}")
        if detail:
            err.print(detail, markup=False)
        if self.log_path.exists():
            tail = _tail(self.log_path.read_text(errors="replace"))
            err.print(f"\nthe end of the server's log ({self.log_path}):", markup=False)
            err.print(tail or "(empty)", markup=False)
        err.print(
            f"\nWhat the tour made is kept in {self.home}: `ketch up --home {self.home}` "
            "serves it to look at; `make demo` (or `ketch demo`) tries again.",
            markup=False,
        )

    # -- the pipeline --------------------------------------------------------------------

    def run_pipeline(self, api: httpx.Client) -> tuple[str, str, dict[str, Any]]:
        """Submit the tour pipeline with ``kfp.Client``, follow it to the end; its run
        id, Katib experiment and output (model, version, registered, accuracy)."""
        warnings.filterwarnings("ignore", category=FutureWarning)
        import kfp

        from ketch.cli.tour_pipeline import tour_pipeline

        experiment = f"tour-{secrets.token_hex(3)}"
        self.step("1. Pipeline: prepare data → tune (Katib) → train → evaluate → register")
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # kfp prints its own links
                client = kfp.Client(host=self.url, namespace=NAMESPACE)
                made = client.create_run_from_pipeline_func(
                    tour_pipeline,
                    arguments={
                        "experiment": experiment,
                        "namespace": NAMESPACE,
                        "max_trials": self.trials,
                    },
                    run_name="ketch tour",
                    experiment_name="ketch-tour",
                    enable_caching=False,
                )
        except Exception as exc:  # noqa: BLE001 - the kfp client raises its own errors
            raise TourFailed(f"submitting the pipeline with kfp.Client failed: {exc}") from None
        run_id = made.run_id
        self.say(f"  run {run_id} submitted with kfp.Client {self.elapsed()}")
        status = self.follow(api, run_id, experiment)
        if status.get("state") != "SUCCEEDED":
            raise TourFailed(
                f"run {run_id} {status.get('state')}: {status.get('error') or ''}".rstrip(": "),
                self.failed_tasks(api, run_id, status),
            )
        outcome = (status.get("outputs") or {}).get("Output")
        if not isinstance(outcome, dict) or not outcome.get("version"):
            raise TourFailed(f"run {run_id} returned no model version: {status.get('outputs')}")
        named = f"[bold]{outcome['model']} {outcome['version']}[/]"
        accuracy = float(outcome.get("accuracy") or 0)
        if outcome.get("registered"):
            self.say(f"  registered {named}: accuracy {accuracy:.3f} on held-out rows")
        else:
            self.say(
                f"  accuracy {accuracy:.3f} on held-out rows does not beat {named}'s "
                f"{float(outcome.get('version_accuracy') or 0):.3f}: nothing registered"
            )
        return run_id, experiment, outcome

    def follow(self, api: httpx.Client, run_id: str, experiment: str) -> dict[str, Any]:
        """Print task and trial states as they change until the run ends; its status."""
        path = f"{_RUNS.format(ns=NAMESPACE)}/{run_id}"
        trials_path = f"{_KATIB.format(ns=NAMESPACE)}/trials"
        tasks: dict[str, str] = {}
        trials: dict[str, str] = {}
        selector = f"katib.kubeflow.org/experiment={experiment}"
        tuned = False
        deadline = time.monotonic() + 1200
        spinner = self.console.status(f"run {run_id}: starting") if self.interactive else None
        with spinner if spinner is not None else contextlib.nullcontext():
            while True:
                status = self._get(api, path).get("status") or {}
                states = {
                    task["path"]: task["state"]
                    for task in status.get("tasks") or []
                    if task.get("type") == "container"
                }
                self.show_tasks(states, tasks, later="tune")  # tune ends after its trials
                if tasks.get("tune") == "RUNNING" or (states.get("tune") and not tuned):
                    tuned = states["tune"] != "RUNNING"  # once more after it ends
                    found = self._get(api, trials_path, {"labelSelector": selector})
                    for trial in found.get("items") or []:
                        self.show_trial(trial, trials)
                self.show_tasks(states, tasks)
                if status.get("state") in _FINISHED:
                    return status
                if spinner is not None:
                    done = sum(s in _FINISHED for s in tasks.values())
                    spinner.update(f"run {run_id}: {done} of 5 tasks done")
                if time.monotonic() > deadline:
                    raise TourFailed(f"run {run_id} did not finish within 20 minutes")
                time.sleep(0.4)

    def show_tasks(self, states: dict[str, str], seen: dict[str, str], later: str = "") -> None:
        """Print the tasks whose state changed, but the end of ``later``."""
        for name, state in states.items():
            if seen.get(name) != state and not (name == later and state in _FINISHED):
                seen[name] = state
                self.say(f"  {self.elapsed()} {name:<12} {_styled(state)}")

    def show_trial(self, trial: dict[str, Any], seen: dict[str, str]) -> None:
        name = trial["metadata"]["name"]
        held = [
            c["type"]
            for c in (trial.get("status") or {}).get("conditions") or []
            if c.get("status") == "True" and c.get("type") != "Created"
        ]
        state = held[-1] if held else "Created"
        if seen.get(name) == state:
            return
        seen[name] = state
        params = " ".join(
            f"{p['name']}={p['value']}" for p in trial["spec"].get("parameterAssignments") or []
        )
        metrics = ((trial.get("status") or {}).get("observation") or {}).get("metrics") or []
        score = " ".join(f"{m['name']}={m.get('latest')}" for m in metrics)
        self.say(f"  {self.elapsed()}   trial {name} {params} {_styled(state)} {score}".rstrip())

    def failed_tasks(self, api: httpx.Client, run_id: str, status: dict[str, Any]) -> str:
        """The failed tasks' errors and the ends of their logs."""
        parts = []
        for task in status.get("tasks") or []:
            if task.get("state") != "FAILED":
                continue
            parts.append(f"task {task['path']} FAILED: {task.get('error', '')}")
            log = api.get(
                f"{_RUNS.format(ns=NAMESPACE)}/{run_id}/log",
                params={"task": task["path"], "follow": "false"},
            )
            if log.status_code == 200 and log.text.strip():
                parts.append(f"the end of its log:\n{_tail(log.text, 15)}")
        return "\n".join(parts)

    # -- serving ---------------------------------------------------------------------------

    def deploy(self, api: httpx.Client, outcome: dict[str, Any]) -> str:
        """Serve the registered version as InferenceService :data:`SERVICE` (created, or
        its spec replaced) and wait until it serves it; its URL."""
        uri = f"model-registry://{outcome['model']}/{outcome['version']}"
        self.step(f"2. Serving: InferenceService {SERVICE} from {uri}")
        path = _ISVC.format(ns=NAMESPACE)
        spec = {"predictor": {"sklearn": {"storageUri": uri, "protocolVersion": "v2"}}}
        current = api.get(f"{path}/{SERVICE}")
        if current.status_code == 200:
            manifest = current.json()
            manifest["spec"] = spec
            answer = api.put(f"{path}/{SERVICE}", json=manifest)
        else:
            manifest = {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": {"name": SERVICE, "namespace": NAMESPACE},
                "spec": spec,
            }
            answer = api.post(path, json=manifest)
        if answer.status_code not in (200, 201):
            raise TourFailed(f"the InferenceService was refused: {answer.text}")

        def serving() -> dict[str, Any] | None:
            service = self._get(api, f"{path}/{SERVICE}")
            return service if _ready(service) else None

        try:
            service = _wait(serving, 180, f"InferenceService {SERVICE} Ready")
        except TourFailed as exc:
            conditions = (self._get(api, f"{path}/{SERVICE}").get("status") or {}).get("conditions")
            raise TourFailed(str(exc), f"its conditions: {conditions}") from None
        url = str(service["status"]["url"])
        self.say(f"  Ready at [bold]{url}[/] {self.elapsed()}")
        return url

    def query(self, service_url: str) -> tuple[list[str], list[str]]:
        """A V2 inference request with one malignant and one benign row of the data set;
        the predicted and the actual labels."""
        import httpx
        from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]

        data = load_breast_cancer()
        rows = [int(list(data.target).index(label)) for label in (0, 1)]
        features = [float(v) for row in rows for v in data.data[row]]
        endpoint = f"{service_url}/v2/models/{SERVICE}/infer"
        self.step(f"3. Inference: POST {endpoint}")
        body = {
            "inputs": [
                {
                    "name": "features",
                    "shape": [len(rows), data.data.shape[1]],
                    "datatype": "FP64",
                    "data": features,
                }
            ]
        }
        try:
            answer = httpx.post(endpoint, json=body, timeout=30)
        except httpx.HTTPError as exc:
            raise TourFailed(f"the inference request failed: {exc}") from None
        if answer.status_code != 200:
            raise TourFailed(f"the inference request answered {answer.status_code}: {answer.text}")
        predicted = [_LABELS[int(v)] for v in answer.json()["outputs"][0]["data"]]
        actual = [_LABELS[int(data.target[row])] for row in rows]
        for row, guess, truth in zip(rows, predicted, actual, strict=True):
            self.say(f"  row {row} of the data set ({truth}): predicted [bold]{guess}[/]")
        return predicted, actual

    # -- where to look -----------------------------------------------------------------------

    def where_to_look(
        self, run_id: str, experiment: str, outcome: dict[str, Any], service_url: str
    ) -> None:
        url = self.url
        self.step(f"Where to look — the dashboard is at {url}/")
        rows = [
            (f"{url}/", "home: recent runs, experiments, services and models"),
            (
                f"{url}/#/runs/details/{run_id}",
                "the run's graph; the evaluate task shows its metrics, confusion matrix "
                "and ROC curve",
            ),
            ("Katib", f"experiment {experiment}: its trials and the parallel-coordinates plot"),
            ("Models", f"{outcome['model']} {outcome['version']} and its lineage to the run"),
            ("Serving", f"{SERVICE} at {service_url}, with a try-it panel"),
            (f"{url}/docs", "the API; kfp.Client, kubectl and the Kubeflow SDKs talk to it"),
        ]
        for where, what in rows:
            self.say(f"  {where}\n      {what}")

    @staticmethod
    def _get(api: httpx.Client, path: str, params: dict[str, str] | None = None) -> Any:
        import httpx

        try:
            answer = api.get(path, params=params)
        except httpx.HTTPError as exc:
            raise TourFailed(f"the server did not answer GET {path}: {exc}") from None
        if answer.status_code != 200:
            raise TourFailed(f"GET {path} answered {answer.status_code}: {answer.text}")
        return answer.json()
