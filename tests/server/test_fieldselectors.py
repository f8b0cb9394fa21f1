"""Field selectors as the Kubernetes API server reads them: ``=``, ``==``, ``!=``,
commas, backslash escapes, and unknown fields refused naming the field."""

from __future__ import annotations

import pytest

from ketch.core.errors import InvalidSpec
from ketch.server.fieldselectors import FieldSelector, Requirement

FIELDS = ("involvedObject.name", "involvedObject.kind", "type", "reason")


def test_equality_inequality_and_double_equals() -> None:
    selector = FieldSelector.parse(
        "involvedObject.name=mnist,involvedObject.kind==PyTorchJob,type!=Normal", FIELDS
    )
    assert selector.requirements == (
        Requirement("involvedObject.name", "=", "mnist"),
        Requirement("involvedObject.kind", "=", "PyTorchJob"),
        Requirement("type", "!=", "Normal"),
    )
    values = {"involvedObject.name": "mnist", "involvedObject.kind": "PyTorchJob"}
    assert selector.matches(lambda f: {**values, "type": "Warning"}.get(f))
    assert not selector.matches(lambda f: {**values, "type": "Normal"}.get(f))
    assert not selector.matches(lambda f: {**values, "involvedObject.name": "x"}.get(f))
    assert selector.equal("involvedObject.kind") == "PyTorchJob"
    assert selector.equal("type") is None  # only != says something about it
    assert str(selector) == "involvedObject.name=mnist,involvedObject.kind=PyTorchJob,type!=Normal"


def test_empty_selects_everything_and_empty_values_match_missing_fields() -> None:
    for text in (None, "", " ", ","):
        selector = FieldSelector.parse(text, FIELDS)
        assert not selector and selector.matches(lambda _f: None)
    empty = FieldSelector.parse("reason=", FIELDS)
    assert empty.matches(lambda _f: None) and not empty.matches(lambda _f: "x")


def test_escapes_let_values_hold_commas_and_equals() -> None:
    selector = FieldSelector.parse(r"reason=a\,b\=c\\d,type=Warning", FIELDS)
    assert selector.requirements == (
        Requirement("reason", "=", "a,b=c\\d"),
        Requirement("type", "=", "Warning"),
    )
    with pytest.raises(InvalidSpec, match="unfinished escape"):
        FieldSelector.parse("reason=a\\", FIELDS)


def test_aliases_name_the_same_field() -> None:
    selector = FieldSelector.parse(
        "regarding.name=x", FIELDS, {"regarding.name": "involvedObject.name"}
    )
    assert selector.requirements == (Requirement("involvedObject.name", "=", "x"),)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("spec.x=1", '"spec.x"'),
        ("involvedObject.name", "not a requirement"),
        ("type=Normal,metadata.labels=a", '"metadata.labels"'),
    ],
)
def test_bad_selectors_name_the_parameter_and_the_field(text: str, fragment: str) -> None:
    with pytest.raises(InvalidSpec) as raised:
        FieldSelector.parse(text, FIELDS)
    assert raised.value.field == "fieldSelector"
    assert fragment in str(raised.value)
