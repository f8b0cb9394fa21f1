"""``POST /apis/v2beta1/pipelines:compile`` over HTTP on a real ``ketch up``: a ``.py``
pipeline is compiled in a process the backend starts (never in the server) and comes
back as its spec; a syntax error, a file without a pipeline, an empty source and code
that never ends (killed at the server's bound, 5 s here) answer 422 naming ``source``;
the folder each compilation ran in is gone afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server.fixtures import SERVER_ENV, serve
from tests.server.helpers import Server

pytestmark = pytest.mark.timeout(300)

COMPILE = "/apis/v2beta1/pipelines:compile"
NS = "compile-upload"

PIPELINE = """\
from kfp import dsl


@dsl.component
def shout(word: str) -> str:
    return word.upper()


@dsl.pipeline(name="loud")
def loud(word: str = "hi"):
    shout(word=word)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {**SERVER_ENV, "KETCH_COMPILE_TIMEOUT": "5"}
    yield from serve(Server(tmp_path_factory.mktemp("ketch-compile"), extra_env=env))


def compiled(server: Server, source: str, **fields: str) -> httpx.Response:
    body = {"namespace": NS, "filename": "pipeline.py", "source": source, **fields}
    with httpx.Client(base_url=server.url, timeout=120) as http:
        return http.post(COMPILE, json=body)


def refusal(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    message = str(response.json()["message"])
    assert "source" in message, message
    return message


def leftovers(server: Server) -> list[Path]:
    return sorted((server.home / "compile").glob("*/*"))


def test_a_pipeline_compiles_with_its_component(server: Server) -> None:
    response = compiled(server, PIPELINE)
    assert response.status_code == 200, response.text
    spec = response.json()["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "loud"
    assert list(spec["root"]["dag"]["tasks"]) == ["shout"]
    assert "comp-shout" in spec["components"]
    assert spec["root"]["inputDefinitions"]["parameters"]["word"]["defaultValue"] == "hi"
    assert leftovers(server) == []


def test_a_syntax_error_names_source_and_the_line(server: Server) -> None:
    message = refusal(compiled(server, "from kfp import dsl\n\ndef broken(:\n    pass\n"))
    assert "syntax error at line 3" in message
    assert "Traceback" not in message


def test_a_file_without_a_pipeline_is_refused(server: Server) -> None:
    message = refusal(compiled(server, "from kfp import dsl\nANSWER = 42\n"))
    assert "no KFP pipeline" in message


def test_two_pipelines_need_a_name_and_a_named_one_compiles(server: Server) -> None:
    two = PIPELINE + "\n\n@dsl.pipeline(name='other')\ndef other():\n    shout(word='x')\n"
    message = refusal(compiled(server, two))
    assert "loud" in message and "other" in message
    response = compiled(server, two, pipeline="other")
    assert response.status_code == 200, response.text
    assert response.json()["pipeline_spec"]["pipelineInfo"]["name"] == "other"


def test_an_empty_source_and_bad_fields_are_refused_before_anything_runs(
    server: Server,
) -> None:
    assert "empty" in refusal(compiled(server, "   \n"))
    response = compiled(server, PIPELINE, filename="pipeline.yaml")
    assert response.status_code == 422 and "filename" in response.json()["message"]
    with server.client() as http:
        response = http.post(COMPILE, json=["not", "an", "object"])
        assert response.status_code == 400, response.text
        too_big = {"namespace": NS, "source": "#" * (2 * 1024 * 1024)}
        assert http.post(COMPILE, json=too_big).status_code == 413


def test_code_that_never_ends_is_killed_at_the_bound(server: Server) -> None:
    message = refusal(compiled(server, "import time\nwhile True:\n    time.sleep(1)\n"))
    assert "longer than 5 s" in message
    assert leftovers(server) == []
