"""Kubeconfig files for ``ketch kubeconfig``: the entries for one server, which file
kubectl would have a new context merged into, and the merge itself, which edits the
file's text in place (keeping its comments and layout) and checks the result against
the merged content, writing the file anew only when an edit in place cannot be made.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ketch.core.errors import InvalidSpec

SECTIONS = ("clusters", "users", "contexts")


@dataclass(frozen=True)
class Entries:
    """The cluster, user and context entries for one server, all called ``name``."""

    name: str
    cluster: dict[str, Any]
    user: dict[str, Any]
    context: dict[str, Any]

    @classmethod
    def of(
        cls,
        name: str,
        server: str,
        namespace: str,
        *,
        ca_data: str | None = None,
        token: str | None = None,
    ) -> Entries:
        """``ca_data``: the CA that vouches for an https server (base64 of its PEM);
        ``token``: the API token the user entry sends (none: an entry with no
        credentials, so the context is complete and a token can be added later)."""
        cluster: dict[str, Any] = {"server": server}
        if ca_data:
            cluster["certificate-authority-data"] = ca_data
        return cls(
            name=name,
            cluster={"cluster": cluster, "name": name},
            user={"name": name, "user": {"token": token} if token else {}},
            context={
                "context": {"cluster": name, "namespace": namespace, "user": name},
                "name": name,
            },
        )

    @property
    def secret(self) -> bool:
        """Whether the entries hold a credential (the file must not be readable by others)."""
        return bool(self.user["user"])

    def section(self, section: str) -> dict[str, Any]:
        return {"clusters": self.cluster, "users": self.user, "contexts": self.context}[section]


def standalone(entries: Entries) -> dict[str, Any]:
    """A whole kubeconfig holding only ``entries``, its context the current one."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [entries.cluster],
        "users": [entries.user],
        "contexts": [entries.context],
        "current-context": entries.name,
        "preferences": {},
    }


def render(document: Any) -> str:
    return str(yaml.safe_dump(document, sort_keys=False, default_flow_style=False))


def merged(document: dict[str, Any], entries: Entries, *, use: bool) -> dict[str, Any]:
    """``document`` with ``entries`` in place of those of the same name (at the first
    one's place; appended when there is none), and ``current-context`` set with ``use``."""
    result = copy.deepcopy(document)
    for section in SECTIONS:
        items = result.get(section) or []
        kept: list[Any] = []
        placed = False
        for item in items:
            if _named(item, entries.name):
                if not placed:
                    kept.append(entries.section(section))
                    placed = True
                continue
            kept.append(item)
        if not placed:
            kept.append(entries.section(section))
        result[section] = kept
    if use:
        result["current-context"] = entries.name
    return result


def _named(item: Any, name: str) -> bool:
    return isinstance(item, dict) and item.get("name") == name


# -- which file ----------------------------------------------------------------------


def kubeconfig_paths() -> list[Path]:
    """The files ``$KUBECONFIG`` lists, else ``~/.kube/config``."""
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        return [Path(p).expanduser() for p in listed]
    return [Path.home() / ".kube" / "config"]


def default_kubeconfig(name: str) -> Path:
    """The file to merge into, as kubectl chooses it: the first listed file that already
    has an entry called ``name``, else the first that exists, else the last listed."""
    paths = kubeconfig_paths()
    if len(paths) == 1:
        return paths[0]
    for path in paths:
        document = _try_load(path)
        if isinstance(document, dict) and any(
            _named(item, name)
            for section in SECTIONS
            if isinstance(document.get(section), list)
            for item in document[section]
        ):
            return path
    for path in paths:
        if path.exists():
            return path
    return paths[-1]


def _try_load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


# -- merging ---------------------------------------------------------------------------


@dataclass
class MergeReport:
    created: bool
    replaced: bool
    rewritten: bool  # the file was written anew: its comments and layout were not kept
    previous_context: str | None
    used: bool

    def describe(self, entries: Entries, target: Path) -> str:
        server = entries.cluster["cluster"]["server"]
        name = entries.name
        if self.created:
            done = f"Created {target} with the cluster, user and context {name!r} for {server}."
        elif self.replaced:
            done = (
                f"Replaced the cluster, user and context {name!r} in {target} "
                f"with those for {server}."
            )
        else:
            done = f"Added the cluster, user and context {name!r} for {server} to {target}."
        lines = [done]
        if self.rewritten:
            lines.append(
                "The file's layout could not be edited in place: it was written anew "
                "with the same content (its comments are gone)."
            )
        if self.used:
            lines.append(f"The current context is now {name!r}.")
        else:
            left = (
                f"The current context is still {self.previous_context!r}"
                if self.previous_context
                else "No current context is set"
            )
            lines.append(
                f"{left}: use this one with 'kubectl --context {name} ...', "
                "or make it the default with --merge --use."
            )
        return "\n".join(lines)


def merge_into(target: Path, entries: Entries, *, use: bool) -> MergeReport:
    """Merge ``entries`` into the kubeconfig at ``target`` (created when missing)."""
    target = Path(os.path.realpath(target))  # a symlinked config is edited where it lives
    field = "--merge"
    try:
        text = target.read_text(encoding="utf-8") if target.exists() else ""
    except UnicodeDecodeError:
        raise InvalidSpec(f"{target} is not UTF-8 text", field=field) from None
    except OSError as exc:
        raise InvalidSpec(f"cannot read {target}: {exc.strerror or exc}", field=field) from None
    try:
        document = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise InvalidSpec(
            f"{target} is not valid YAML: {_yaml_problem(exc)}", field=field
        ) from None
    if document is None:  # a new (or empty) file
        fresh = standalone(entries)
        if not use:
            del fresh["current-context"]
        write(target, render(fresh), mode=0o600, keep_mode=False, field=field)
        return MergeReport(True, False, False, None, use)
    _check_kubeconfig(document, target, field)
    wanted = merged(document, entries, use=use)
    replaced = any(
        _named(item, entries.name) for section in SECTIONS for item in document.get(section) or []
    )
    previous = document.get("current-context") or None
    edited = _edit_in_place(text, entries, use=use)
    rewritten = edited is None or _load_or_none(edited) != wanted
    write(
        target,
        render(wanted) if rewritten else str(edited),
        mode=0o600,
        keep_mode=True,
        private=entries.secret,
        field=field,
    )
    return MergeReport(False, replaced, rewritten, previous, use)


def _check_kubeconfig(document: Any, target: Path, field: str) -> None:
    if not isinstance(document, dict):
        raise InvalidSpec(
            f"{target} is not a kubeconfig: it holds a {type(document).__name__}, "
            "not a mapping with clusters, users and contexts",
            field=field,
        )
    kind = document.get("kind")
    if kind not in (None, "Config"):
        raise InvalidSpec(f"{target} is not a kubeconfig: its kind is {kind!r}", field=field)
    for section in SECTIONS:
        value = document.get(section)
        if value is not None and not isinstance(value, list):
            raise InvalidSpec(
                f"{target} is not a kubeconfig: {section} is a {type(value).__name__}, not a list",
                field=field,
            )


def _yaml_problem(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return " ".join(f"{where}{problem}".split())


def _load_or_none(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


# -- editing the text in place ---------------------------------------------------------


def _edit_in_place(text: str, entries: Entries, *, use: bool) -> str | None:
    """``text`` with the entries replaced or added by editing only their lines; ``None``
    when the layout does not allow it (flow style, several documents, ...)."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:  # e.g. several documents
        return None
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        return None
    keys: dict[str, yaml.Node] = {}
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode):
            keys[key.value] = value
    edits: list[tuple[int, int, str]] = []
    appended: list[str] = []
    for section in SECTIONS:
        new_item = entries.section(section)
        node = keys.get(section)
        if node is None:
            appended.append(f"{section}:\n{_block_item(new_item, 0)}")
        elif isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
            section_edits = _sequence_edits(text, node, entries.name, new_item)
            if section_edits is None:
                return None
            edits += section_edits
        elif (isinstance(node, yaml.SequenceNode) and not node.value) or (
            isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"
        ):
            start = _eat_spaces_before(text, node.start_mark.index)
            edits.append((start, node.end_mark.index, "\n" + _block_item(new_item, 0).rstrip("\n")))
        else:
            return None
    if use:
        name = _scalar(entries.name)
        node = keys.get("current-context")
        if node is None:
            appended.append(f"current-context: {name}\n")
        elif isinstance(node, yaml.ScalarNode):
            start = _eat_spaces_before(text, node.start_mark.index)
            edits.append((start, node.end_mark.index, f" {name}"))
        else:
            return None
    edits.sort()
    if any(later[0] < earlier[1] for earlier, later in zip(edits, edits[1:], strict=False)):
        return None
    for start, end, replacement in reversed(edits):
        text = text[:start] + replacement + text[end:]
    if appended:
        if text and not text.endswith("\n"):
            text += "\n"
        text += "".join(appended)
    return text


def _sequence_edits(
    text: str, node: yaml.SequenceNode, name: str, new_item: dict[str, Any]
) -> list[tuple[int, int, str]] | None:
    """Edits replacing the items called ``name`` in a block sequence (the first with
    ``new_item``, the others with nothing), or appending ``new_item`` after its last."""
    edits: list[tuple[int, int, str]] = []
    spans = []
    for item in node.value:
        span = _item_span(text, item)
        if span is None:
            return None
        spans.append(span)
    placed = False
    for item, (start, end, indent) in zip(node.value, spans, strict=True):
        if not isinstance(item, yaml.MappingNode) or not _node_named(item, name):
            continue
        edits.append((start, end, "" if placed else _block_item(new_item, indent)))
        placed = True
    if not placed:
        _, end, indent = spans[-1]
        edits.append((end, end, _block_item(new_item, indent)))
    return edits


def _node_named(node: yaml.MappingNode, name: str) -> bool:
    return any(
        isinstance(key, yaml.ScalarNode)
        and key.value == "name"
        and isinstance(value, yaml.ScalarNode)
        and value.value == name
        for key, value in node.value
    )


def _item_span(text: str, item: yaml.Node) -> tuple[int, int, int] | None:
    """``(start, end, indent)`` of a block sequence item's lines: from the start of the
    line of its ``-`` to the end of the line its content ends on; ``indent`` is the
    column of the ``-``."""
    dash = item.start_mark.index - 1
    while dash >= 0 and text[dash] in " \t\n":
        dash -= 1
    if dash < 0 or text[dash] != "-":
        return None
    line_start = text.rfind("\n", 0, dash) + 1
    if text[line_start:dash].strip():
        return None  # something else before the dash on its line
    end = _content_end(item)
    if end > 0 and text[end - 1] == "\n":
        line_end = end
    else:
        newline = text.find("\n", end)
        line_end = len(text) if newline < 0 else newline + 1
    return line_start, line_end, dash - line_start


def _content_end(node: yaml.Node) -> int:
    """Where ``node``'s own content ends (a block collection's end mark runs on to the
    next token, past blank lines and comments)."""
    if not isinstance(node, yaml.CollectionNode) or node.flow_style or not node.value:
        return int(node.end_mark.index)
    if isinstance(node, yaml.MappingNode):
        return _content_end(node.value[-1][1])
    return _content_end(node.value[-1])


def _eat_spaces_before(text: str, index: int) -> int:
    while index > 0 and text[index - 1] in " \t":
        index -= 1
    return index


def _block_item(item: dict[str, Any], indent: int) -> str:
    """``item`` as a block sequence item whose ``-`` is at column ``indent``."""
    pad = " " * indent
    return "".join(pad + line for line in render([item]).splitlines(keepends=True))


def _scalar(value: str) -> str:
    return render({"k": value})[len("k: ") :].rstrip("\n")


# -- writing ---------------------------------------------------------------------------


def write(
    target: Path, text: str, *, mode: int, keep_mode: bool, field: str, private: bool = False
) -> None:
    """Write ``text`` to ``target`` at once (a temporary file renamed over it), with
    ``mode``, or the mode it had when ``keep_mode``, less any bits for others than its
    owner when ``private`` (it holds a token); missing folders are made (0700).
    A failure is an ``InvalidSpec`` naming ``field``."""
    import tempfile

    try:
        if target.is_dir():
            raise InvalidSpec(f"{target} is a directory", field=field)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if keep_mode and target.exists():
            mode = target.stat().st_mode & 0o777
        if private:
            mode &= 0o700
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(text)
            os.chmod(temporary, mode)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise InvalidSpec(f"cannot write {target}: {exc.strerror or exc}", field=field) from None
