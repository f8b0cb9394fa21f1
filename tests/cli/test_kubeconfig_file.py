"""Merging a server's entries into kubeconfig files of the layouts found in practice:
each is edited in place (its other bytes kept) and reads back as the merged content."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ketch.cli.kubeconfig_file import Entries, merge_into, merged

ENTRIES = Entries.of("ketch", "http://127.0.0.1:8808", "default")


def merge(tmp_path: Path, text: str, *, use: bool = False) -> tuple[str, bool]:
    path = tmp_path / "config"
    path.write_text(text)
    before = yaml.safe_load(text)
    report = merge_into(path, ENTRIES, use=use)
    after = path.read_text()
    assert yaml.safe_load(after) == merged(before, ENTRIES, use=use)
    return after, report.rewritten


@pytest.mark.parametrize(
    "text",
    [
        # what kubectl writes for an empty config
        "apiVersion: v1\nclusters: null\ncontexts: null\ncurrent-context: ''\nkind: Config\n"
        "preferences: {}\nusers: null\n",
        # empty flow lists, and a section with no value at all
        "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: [] # none yet\nusers:\n",
        # sections missing, and no newline at the end
        "apiVersion: v1\nkind: Config\npreferences: {}",
        # items indented under their key, a blank line and a comment between them
        "clusters:\n  - name: a\n    cluster:\n      server: https://a\n\n  # b follows\n"
        "  - name: b\n    cluster: {server: https://b}\nusers:\n  - name: a\n    user: {}\n"
        "contexts:\n  - name: a\n    context: {cluster: a, user: a}\n",
        # a block scalar as the last value of an item
        "users:\n- name: a\n  user:\n    token: |\n      abc\n- name: b\n  user: {}\n",
    ],
    ids=["kubectl-empty", "empty-sections", "missing-sections", "indented", "block-scalar"],
)
def test_layouts_are_edited_in_place(tmp_path: Path, text: str) -> None:
    after, rewritten = merge(tmp_path, text)
    assert not rewritten
    if text.endswith("\n"):
        # Everything that was there is still there, in order: only lines were added.
        kept = iter(after.splitlines())
        for line in text.splitlines():
            if line.strip().startswith(("clusters:", "contexts:", "users:")):
                continue  # an empty section's own line gains its first item
            assert any(line == candidate for candidate in kept), (line, after)


def test_duplicates_of_its_name_are_replaced_by_one_entry(tmp_path: Path) -> None:
    text = (
        "clusters:\n- name: ketch\n  cluster: {server: http://old:1}\n"
        "- name: other\n  cluster: {server: https://other}\n"
        "- name: ketch\n  cluster: {server: http://older:2}\n"
    )
    after, rewritten = merge(tmp_path, text)
    assert not rewritten
    names = [c["name"] for c in yaml.safe_load(after)["clusters"]]
    assert names == ["ketch", "other"]
    assert "other:1" not in after and "older" not in after
    assert "- name: other\n  cluster: {server: https://other}\n" in after


def test_use_sets_the_current_context_and_keeps_its_comment(tmp_path: Path) -> None:
    after, _ = merge(tmp_path, "kind: Config\ncurrent-context: prod  # mine\n", use=True)
    assert "current-context: ketch  # mine\n" in after
    after, _ = merge(tmp_path, "kind: Config\n", use=True)
    assert after.endswith("current-context: ketch\n")


def test_a_name_yaml_would_misread_is_quoted(tmp_path: Path) -> None:
    entries = Entries.of("1.5", "http://127.0.0.1:8808", "default")
    path = tmp_path / "config"
    path.write_text("kind: Config\ncurrent-context: prod\n")
    merge_into(path, entries, use=True)
    document = yaml.safe_load(path.read_text())
    assert document["current-context"] == "1.5"
    assert [c["name"] for c in document["clusters"]] == ["1.5"]


def test_entries_with_a_token_close_the_file_to_others(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("apiVersion: v1\nkind: Config\nclusters: []\n# shared\n")
    path.chmod(0o644)
    merge_into(path, ENTRIES, use=False)
    assert path.stat().st_mode & 0o777 == 0o644  # no credential: its mode is kept
    secret = Entries.of(
        "ketch", "https://127.0.0.1:8808", "default", ca_data="Q0E=", token="ketch_secret"
    )
    assert secret.secret and not ENTRIES.secret
    report = merge_into(path, secret, use=True)
    assert not report.rewritten
    assert path.stat().st_mode & 0o777 == 0o600
    document = yaml.safe_load(path.read_text())
    assert "# shared" in path.read_text()
    assert document["clusters"] == [
        {
            "cluster": {"server": "https://127.0.0.1:8808", "certificate-authority-data": "Q0E="},
            "name": "ketch",
        }
    ]
    assert document["users"] == [{"name": "ketch", "user": {"token": "ketch_secret"}}]
