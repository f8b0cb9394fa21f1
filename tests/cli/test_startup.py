"""Starting ``ketch`` for a light command (help, version) imports none of the heavy
libraries the commands themselves need: they are imported by the commands that use them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.helpers import base_env

HEAVY = ("numpy", "kfp", "torch", "pandas", "sklearn", "fastapi", "uvicorn", "sqlalchemy")

IMPORTED = """
import json, sys
sys.argv = ["ketch", *json.loads(sys.argv[1])]
from ketch.cli.main import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["get", "--help"],
        ["runs", "--help"],
        ["models", "--help"],
        ["models", "list", "--help"],
        ["notebooks", "--help"],
        ["notebooks", "create", "--help"],
        ["serve", "--help"],
        ["up", "--help"],
        ["kubeconfig", "--help"],
        ["users", "--help"],
        ["users", "add", "--help"],
        ["tokens", "--help"],
        ["login", "--help"],
        ["whoami", "--help"],
    ],
    ids=" ".join,
)
def test_light_commands_import_nothing_heavy(args: list[str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", IMPORTED, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=base_env(tmp_path),
    )
    report = json.loads(result.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, result.stderr
    assert "Usage:" in result.stdout or result.stdout.startswith("ketch ")
    modules = set(report["modules"])
    assert "ketch.cli.main" in modules
    assert [name for name in HEAVY if name in modules] == []


def test_the_cli_default_namespace_is_the_resource_models_default() -> None:
    from ketch.cli import resources
    from ketch.core import resource

    assert resources.DEFAULT_NAMESPACE == resource.DEFAULT_NAMESPACE
