"""Running Python snippets with the Kubernetes-based SDKs (kubernetes, kserve,
kubeflow-katib, kubeflow) against a real ``ketch up``.

The SDKs live in their own virtualenv, ``.venv-k8s-clients`` (scripts/k8s-clients.sh
installs it from requirements.txt beside this file; ``make test`` runs it first), not
in Ketch's: a snippet runs there as a subprocess, with ``KUBECONFIG`` naming a
kubeconfig that ``ketch kubeconfig`` wrote, exactly as a user's program would.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.server.helpers import REPO

VENV = REPO / ".venv-k8s-clients"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".ketch-requirements"  # written by scripts/k8s-clients.sh once installed
SKIP_ENV = "KETCH_TEST_K8S_CLIENTS_SKIP"
RESULT = "KETCH-SNIPPET-RESULT:"

# Runs the snippet with ``params`` as globals; what it puts in ``result`` (anything
# JSON can hold, else its str) comes back.
PRELUDE = """\
import json, sys
params = json.loads(sys.argv[1])
globals().update(params)
result = None
"""
EPILOGUE = f"""
print({RESULT!r} + json.dumps(result, default=str), flush=True)
"""


def unavailable() -> str | None:
    """Why the SDKs cannot be used here, or ``None`` when they can."""
    reason = os.environ.get(SKIP_ENV)
    if reason:
        return f"the Kubernetes SDKs were not installed: {reason}"
    if not PYTHON.exists() or not STAMP.exists():
        return (
            f"the Kubernetes SDKs are not installed in {VENV.name}: run scripts/k8s-clients.sh "
            "(make test does)"
        )
    return None


class SnippetFailed(AssertionError):
    """The snippet raised: ``error`` is its exception's last line (``Type: message``)."""

    def __init__(self, error: str, output: str) -> None:
        self.error = error
        self.output = output
        super().__init__(f"{error}\n--- the snippet's output ---\n{output[-6000:]}")


@dataclass
class Sdk:
    """Runs snippets in the SDKs' virtualenv against the server ``kubeconfig`` names."""

    kubeconfig: Path
    home: Path

    def run(self, code: str, *, timeout: float = 120, **params: Any) -> Any:
        """Run ``code`` (its ``params`` as globals); return what it left in ``result``.
        Raises :class:`SnippetFailed` with the snippet's error when it raises."""
        # A file, not ``-c``: the kubeflow SDK reads a training function's source.
        script = Path(tempfile.mkstemp(prefix="snippet-", suffix=".py", dir=self.home)[1])
        script.write_text(PRELUDE + textwrap.dedent(code) + EPILOGUE)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "KUBECONFIG": str(self.kubeconfig),
            "PYTHONWARNINGS": "ignore",
            "PYTHONDONTWRITEBYTECODE": "1",
            "NO_COLOR": "1",
        }
        process = subprocess.run(
            [str(PYTHON), str(script), json.dumps(params)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=self.home,
        )
        output = process.stdout + process.stderr
        if process.returncode != 0:
            lines = [line for line in process.stderr.splitlines() if line.strip()]
            raise SnippetFailed(lines[-1] if lines else f"exit {process.returncode}", output)
        for line in reversed(process.stdout.splitlines()):
            if line.startswith(RESULT):
                return json.loads(line[len(RESULT) :])
        raise SnippetFailed("the snippet printed no result", output)
