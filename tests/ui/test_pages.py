"""The dashboard's pages over plain HTTP on a real single-user ``ketch up``: served at
``/`` on the API's origin with the page headers, each showing what the API holds as
text, the static files cached forever by content hash and gzipped, a namespace chosen
once remembered, and the YAML editor's refusal naming the field and its line."""

from __future__ import annotations

import gzip
import html
import re

import pytest
import yaml

from ketch.ui.assets import ECHARTS, FILES, HTMX, asset, url
from tests.ui.conftest import BATCH_JOB, EDIT_JOB, NOTEBOOK, NS, Dashboard

pytestmark = pytest.mark.timeout(300)

HTML = {"Accept": "text/html"}


def test_home_shows_the_namespaces_objects_with_their_states(single: Dashboard) -> None:
    with single.client() as http:
        first = http.get("/", headers=HTML)
        assert first.status_code == 303 and first.headers["location"] == "/?ns=default"
        page = http.get("/", params={"ns": NS})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        text = page.text
        assert single.run_id in text and "SUCCEEDED" in text
        assert re.search(rf'data-name="{BATCH_JOB}".*?>Job<.*?Complete', text, re.S), text
        assert re.search(rf'data-name="{NOTEBOOK}".*?Stopped', text, re.S)
        assert re.search(rf'data-name="{EDIT_JOB}".*?PyTorchJob.*?Suspended', text, re.S)
        assert 'data-chart="runs-chart"' in text
        assert url("kfp-links.js") in text and url(ECHARTS) in text
        # the events feed names the run's and the job's objects
        assert "PipelineRun/" in text or "Job/" in text
        # the namespace chosen is remembered: the next visit without one goes there
        assert page.cookies.get("ketch_ns") == NS
        again = http.get("/ui/runs", headers=HTML)
        assert again.status_code == 303 and again.headers["location"] == f"/ui/runs?ns={NS}"


def test_the_navigation_is_links_and_each_page_answers(single: Dashboard) -> None:
    with single.client() as http:
        home = http.get("/", params={"ns": NS}).text
        nav = re.search(r'<nav aria-label="Main">(.*?)</nav>', home, re.S)
        assert nav is not None
        links = re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', nav.group(1))
        labels = [label for _href, label in links]
        for wanted in ("Home", "Pipelines", "Runs", "Experiments", "Katib", "Training"):
            assert wanted in labels
        for wanted in ("Serving", "Models", "Notebooks", "Profiles"):
            assert wanted in labels
        for href, label in links:
            answer = http.get(href.replace("&amp;", "&"))
            assert answer.status_code == 200, (label, href, answer.text[:300])
            assert "<title>" in answer.text


def test_lists_use_the_kinds_printer_columns(single: Dashboard) -> None:
    with single.client() as http:
        jobs = http.get("/ui/k/jobs.batch", params={"ns": NS}).text
        head = re.search(r"<thead>(.*?)</thead>", jobs, re.S)
        assert head is not None
        assert re.findall(r"<th[^>]*>([^<]+)</th>", head.group(1)) == [
            "Name",
            "Status",
            "Completions",
            "Age",
        ]
        assert f'href="/ui/k/jobs.batch/{BATCH_JOB}?ns={NS}"' in jobs
        # the section's other kinds are tabs
        assert 'href="/ui/k/pytorchjobs.kubeflow.org?ns=ui-demo"' in jobs
        missing = http.get("/ui/k/nothings.example.com", params={"ns": NS}, headers=HTML)
        assert missing.status_code == 404 and "serves no resource" in missing.text
        bad = http.get("/ui/k/jobs.batch", params={"ns": "Not A Name"}, headers=HTML)
        assert bad.status_code == 400


def test_an_objects_page_shows_its_yaml_events_and_actions(single: Dashboard) -> None:
    with single.client() as http:
        page = http.get(f"/ui/k/jobs.batch/{BATCH_JOB}", params={"ns": NS}).text
        shown = re.search(r'<pre class="yaml" id="yaml" tabindex="0">(.*?)</pre>', page, re.S)
        assert shown is not None
        obj = yaml.safe_load(html.unescape(shown.group(1)))
        assert obj["metadata"]["name"] == BATCH_JOB and "managedFields" not in obj["metadata"]
        assert 'id="edit"' in page and 'id="confirm-delete"' in page
        assert "Complete" in page  # its conditions
        events = re.search(r'<table class="list events">(.*?)</table>', page, re.S)
        assert events is not None and "Job/" + BATCH_JOB in events.group(1)


def test_a_refused_edit_names_the_field_and_its_line(single: Dashboard) -> None:
    target = f"/ui/k/pytorchjobs.kubeflow.org/{EDIT_JOB}"
    with single.client() as http:
        editor = http.get(f"{target}/edit", params={"ns": NS}).text
        text = re.search(r"<textarea[^>]*>(.*?)</textarea>", editor, re.S)
        assert text is not None
        document = html.unescape(text.group(1))
        assert "status:" not in document and "managedFields" not in document
        broken = document.replace("replicas: 1", "replicas: -1")
        answer = http.put(target, params={"ns": NS}, json={"yaml": broken})
        assert answer.status_code == 422
        line = broken.split("\n").index("      replicas: -1") + 1
        field = "spec.pytorchReplicaSpecs.Master.replicas"
        assert f'data-field="{field}" data-line="{line}"' in answer.text
        assert "greater than or equal to 0" in answer.text
        unparsable = http.put(target, params={"ns": NS}, json={"yaml": "spec: [oops"})
        assert unparsable.status_code == 422 and "does not parse" in unparsable.text


def test_static_files_are_cached_by_content_and_gzipped(single: Dashboard) -> None:
    with single.client() as http:
        for name in FILES:
            answer = http.get(url(name), headers={"Accept-Encoding": "gzip"})
            assert answer.status_code == 200, name
            assert answer.headers["content-encoding"] == "gzip"
            assert "immutable" in answer.headers["cache-control"]
            assert answer.content == asset(name).body  # httpx decompressed it
            plain = http.get(url(name), headers={"Accept-Encoding": "identity"})
            assert "content-encoding" not in plain.headers and plain.content == asset(name).body
        assert http.get(url(HTMX).replace(asset(HTMX).digest, "0" * 16)).status_code == 404
        assert http.get(url(HTMX).rsplit("/", 1)[0] + "/nothing.js").status_code == 404
    # htmx 2 and ECharts 5's full build, and the whole set within 2 MB gzipped
    assert b"htmx" in asset(HTMX).body[:200] and b"echarts" in asset(ECHARTS).body[:5000]
    assert sum(len(gzip.compress(asset(n).body)) for n in FILES) <= 2 * 1024 * 1024
