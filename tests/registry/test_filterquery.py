"""filterQuery: the parser (the grammar Model Registry publishes, its errors and bounds)
and the conditions it compiles to, run on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy import text as sql
from sqlalchemy.dialects import postgresql, sqlite

from ketch.core.errors import InvalidSpec
from ketch.core.store.db import Database
from ketch.registry.filterquery import (
    FIELDS,
    KINDS,
    MAX_DEPTH,
    MAX_LENGTH,
    And,
    Comparison,
    MatchAll,
    Or,
    Property,
    parse,
    where,
)
from ketch.registry.tables import MIGRATIONS, EntityRow, PropertyRow


def cmp(name: str, op: str, value: Any, type: str | None = None) -> Comparison:
    return Comparison(Property(name, type), op, value)


# -- the parser ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "op", "value"),
    [
        ('name = "m"', "=", "m"),
        ("name != 'm'", "!=", "m"),
        ("name <> 'm'", "!=", "m"),
        ("x > 1", ">", 1),
        ("x < -2", "<", -2),
        ("x >= 0.5", ">=", 0.5),
        ("x <= 1e-5", "<=", 1e-5),
        ('name LIKE "%tensorflow%"', "LIKE", "%tensorflow%"),
        ("name ILIKE '%Test%'", "ILIKE", "%Test%"),
        ("id IN (200, 201)", "IN", (200, 201)),
        ('name IN ("model-a", "model-b")', "IN", ("model-a", "model-b")),
        ("id IN (42)", "IN", (42,)),
        ("x IN ()", "IN", ()),
        ("flag IN (true, FALSE)", "IN", (True, False)),
    ],
)
def test_every_operator(text: str, op: str, value: Any) -> None:
    parsed = parse(text)
    assert isinstance(parsed, Comparison)
    assert (parsed.op, parsed.value) == (op, value)


def test_values_keep_their_types() -> None:
    query = "a = 42 AND b = 3.14 AND c = 1e-5 AND d = .5 AND e = +7 AND f = true AND g = False"
    parsed = parse(query)
    assert isinstance(parsed, And)
    values = [term.value for term in parsed.terms if isinstance(term, Comparison)]
    assert values == [42, 3.14, 1e-5, 0.5, 7, True, False]
    assert [type(v) for v in values] == [int, float, float, float, int, bool, bool]


def test_and_binds_tighter_than_or_and_parentheses_group() -> None:
    a, b, c = cmp("a", "=", 1), cmp("b", "=", 2), cmp("c", "=", 3)
    assert parse("a = 1 OR b = 2 AND c = 3") == Or((a, And((b, c))))
    assert parse("a = 1 AND b = 2 OR c = 3") == Or((And((a, b)), c))
    assert parse("(a = 1 OR b = 2) AND c = 3") == And((Or((a, b)), c))
    assert parse("a = 1 AND (b = 2 OR (c = 3))") == And((a, Or((b, c))))
    assert parse("((a = 1))") == a
    assert parse("a = 1 OR b = 2 OR c = 3") == Or((a, b, c))


def test_keywords_are_case_insensitive_and_comments_are_skipped() -> None:
    expected = Or((And((cmp("n", "LIKE", "x"), cmp("t", "ILIKE", "y"))), cmp("k", "IN", (True,))))
    assert parse("n like 'x' and t iLike 'y' or k in (TRUE)") == expected
    assert parse("n LIKE 'x' -- a comment\n AND t ILIKE 'y' OR k IN (true) -- more") == expected
    # a keyword where a name is expected is a name
    assert parse("in = 1 and and = 2") == And((cmp("in", "=", 1), cmp("and", "=", 2)))


def test_quotes_and_escapes() -> None:
    assert parse("""name = 'it\\'s'""") == cmp("name", "=", "it's")
    assert parse('''name = "say \\"hi\\""''') == cmp("name", "=", 'say "hi"')
    assert parse("""name = "it's" """) == cmp("name", "=", "it's")
    assert parse("""name = 'a "b"'""") == cmp("name", "=", 'a "b"')
    assert parse(r"name = 'back\\slash'") == cmp("name", "=", "back\\slash")
    # other backslashes stay, for LIKE's escapes
    assert parse(r"name LIKE '50\%'") == cmp("name", "LIKE", "50\\%")
    assert parse(r"name = 'a\nb'") == cmp("name", "=", "a\\nb")
    assert parse("name = ''") == cmp("name", "=", "")
    assert parse("name = 'ünïcödé ✓'") == cmp("name", "=", "ünïcödé ✓")


def test_backticks_name_any_property() -> None:
    assert parse('`mlflow.source.type` = "notebook"') == cmp("mlflow.source.type", "=", "notebook")
    assert parse("`custom-metric` > 0.8") == cmp("custom-metric", ">", 0.8)
    assert parse('`my-prop`.string_value = "x"') == cmp("my-prop", "=", "x", "string_value")
    assert parse("`a b`.INT_VALUE = 1") == cmp("a b", "=", 1, "int_value")
    assert parse(r"`tick\`and\\slash` = 1") == cmp("tick`and\\slash", "=", 1)
    assert parse("`name` = 'x'") == cmp("name", "=", "x")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("framework = 'tensorflow'", cmp("framework", "=", "tensorflow")),
        ("accuracy > 0.95", cmp("accuracy", ">", 0.95)),
        ("framework.string_value = 'pytorch'", cmp("framework", "=", "pytorch", "string_value")),
        ("budget.double_value > 12000", cmp("budget", ">", 12000, "double_value")),
        ("priority.int_value <= 2", cmp("priority", "<=", 2, "int_value")),
        ("enabled.bool_value = true", cmp("enabled", "=", True, "bool_value")),
        ("enabled.Bool_Value = true", cmp("enabled", "=", True, "bool_value")),
        ("a.b.c = 1", cmp("a.b.c", "=", 1)),
        ("a.b.double_value = 1", cmp("a.b", "=", 1, "double_value")),
        ("string_value = 'x'", cmp("string_value", "=", "x")),
    ],
)
def test_typed_and_untyped_custom_properties(text: str, expected: Comparison) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        # the examples of the OpenAPI description and of upstream's parser tests
        "name='my-model' AND state='LIVE'",
        'name = "my-model"',
        'name LIKE "%tensorflow%"',
        '(name = "model-a" OR name = "model-b") AND state = "LIVE"',
        'framework.string_value = "pytorch"',
        '`mlflow.source.type` = "notebook"',
        'status != "inactive"',
        "version >= 1.0",
        "priority < 10",
        "budget.double_value > 10000 AND priority.int_value < 5",
        "(budget.double_value > 10000 OR budget.double_value < 5000) AND active.bool_value = true",
        'description.string_value LIKE "%test%"',
        'status = "active" OR status = "pending" OR status = "reviewing"',
        'name = "test" AND (version > 1.0 OR version < 0.5)',
        'name ILIKE "%model%" AND version > 1.0',
        'id IN (200, 201) AND name = "test"',
        'id IN (200, 201) OR status = "active"',
    ],
)
def test_published_examples_parse(text: str) -> None:
    assert isinstance(parse(text), Comparison | And | Or)


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "-- only a comment", "  -- a\n-- b\n"])
def test_blank_matches_all(text: str) -> None:
    assert parse(text) == MatchAll()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name = ", "at the end of the query; expected a value"),
        ('name "test"', "column 6: unexpected '\"test\"'; expected an operator"),
        ('(name = "test"', "at the end of the query; expected ')'"),
        ('name === "test"', "column 7: unexpected '='; expected a value"),
        ("name = 'x' AND", "at the end of the query; expected a property name"),
        ("name = 'x' b = 2", "column 12: unexpected 'b'; expected the end of the query, AND or OR"),
        ("name = 'x'; DROP TABLE registry_entities; --", "column 11: unexpected character ';'"),
        ("name = 'open", "column 8: the quote ' is never closed"),
        ('name = "open', 'column 8: the quote " is never closed'),
        ("`open = 1", "column 1: the quote ` is never closed"),
        ("a = 1\n AND b ? 2", "line 2, column 8: unexpected character '?'"),
        ("a = 1 OR ()", "column 11: unexpected ')'"),
        ("NOT a = 1", "column 5: unexpected 'a'"),
        ("a IN 1", "column 6: unexpected '1'; expected '('"),
        ("a = (1, 2)", "column 5: unexpected '('; expected a value"),
        ("a IN (1, 'x')", "the list after IN at column 3 mixes numbers and strings"),
        ("a > true", "> at column 3: true and false compare with = and != only"),
        ("a LIKE 5", "LIKE at column 3 takes a quoted pattern"),
        (r"a LIKE 'x\\'", "ends with LIKE's escape character"),
        ("a = 9223372036854775808", "outside the 64-bit integers"),
        ("a = 1e999", "too large a number"),
        ("`a`.b = 1", "column 5: only a type"),
        ("`` = 1", "empty property name"),
        ("artifacts.uri = 'x'", "no filters on related entities"),
        ("a = 'x\x00y'", "control character '\\x00' at character 7"),
    ],
)
def test_errors_say_where_and_what(text: str, message: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse(text)
    assert caught.value.field == "filterQuery"
    assert message in str(caught.value)
    assert str(caught.value).startswith("filterQuery: ")
    assert "Traceback" not in str(caught.value) and "Token(" not in str(caught.value)


def test_random_input_parses_or_is_refused_clearly() -> None:
    """Whatever arrives, parse answers with a tree or InvalidSpec, never another error."""
    pieces = [
        *("name", "`a-b`", "x", ".", "string_value", "int_value", "(", ")", ",", " "),
        *("=", "!=", "<>", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN", "AND", "OR"),
        *("'s'", '"d"', "'", '"', "`", "\\", "1", "-2", "3.5", "1e9", "true", "--", "\n"),
        *(";", "?", "é", "%", "_"),
    ]
    rng = random.Random(7)
    parsed = refused = 0
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 14)))
        try:
            parse(text)
            parsed += 1
        except InvalidSpec as error:
            assert error.field == "filterQuery"
            refused += 1
    assert parsed > 0 and refused > 0


def test_the_length_is_bounded() -> None:
    clause = "name = 'x' OR "
    text = clause * ((MAX_LENGTH - 10) // len(clause)) + "name = 'x'"
    assert len(text) <= MAX_LENGTH
    assert isinstance(parse(text), Or)
    with pytest.raises(InvalidSpec, match=f"at most {MAX_LENGTH}"):
        parse(text + " " * (MAX_LENGTH + 1 - len(text)))


def test_the_nesting_is_bounded() -> None:
    deep = "(" * MAX_DEPTH + "a = 1" + ")" * MAX_DEPTH
    assert parse(deep) == cmp("a", "=", 1)
    nested = "a = 0"
    for level in range(1, MAX_DEPTH):
        nested = f"(a = {level} {'AND' if level % 2 else 'OR'} {nested})"
    assert isinstance(parse(nested), And | Or)
    with pytest.raises(InvalidSpec, match=f"deeper than {MAX_DEPTH} at column {MAX_DEPTH + 1}"):
        parse("(" * (MAX_DEPTH + 1) + "a = 1" + ")" * (MAX_DEPTH + 1))
    # many parentheses in a row are refused before any parsing
    with pytest.raises(InvalidSpec, match="deeper than"):
        parse("(" * 4000)


def test_the_tree_is_immutable() -> None:
    parsed = parse("a = 1 AND b IN (1, 2)")
    assert isinstance(parsed, And)
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.terms = ()  # type: ignore[misc]
    assert hash(parsed) == hash(parse("a = 1 AND b IN (1, 2)"))


# -- compiled conditions ---------------------------------------------------------------


def test_values_are_bound_parameters_never_sql_text() -> None:
    query = (
        "name = 'zq_name' AND `zq-prop` LIKE 'zq_like%' AND author ILIKE 'zq_author' "
        "AND zq_other.int_value IN (123456, 654321)"
    )
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        compiled = (
            select(EntityRow.id)
            .where(where(parse(query), "model_version"))
            .compile(dialect=dialect)
        )
        sql = str(compiled)
        for marker in ("zq_name", "zq-prop", "zq_like", "zq_author", "zq_other", "123456"):
            assert marker not in sql, (marker, sql)
        params = set(map(str, compiled.params.values()))
        assert {"zq_name", "zq-prop", "zq_author", "zq_other", "123456"} <= params


def test_where_refuses_values_that_do_not_fit() -> None:
    for text, kind, message in [
        ("name = 5", "registered_model", "name is text: quote the value ('5')"),
        ("owner IN ('a', 1.5)", "registered_model", None),  # refused by the parser
        ("id = 'abc'", "registered_model", "id is a number, and 'abc' is not"),
        ("id LIKE '1%'", "model_version", "LIKE matches text, and id is a number"),
        ("createTimeSinceEpoch = true", "experiment", "is a number, and true is not"),
        ("flag.bool_value = 1", "experiment", "flag.bool_value is a boolean"),
        ("score.double_value = 'high'", "artifact", "is a number, and 'high' is not"),
        ("n.int_value ILIKE 'x'", "artifact", "ILIKE matches text"),
        ("label.string_value = 3", "artifact", "label.string_value is text"),
        ("language = 'en'", "registered_model", "language is a list"),
    ]:
        with pytest.raises(InvalidSpec) as caught:
            where(parse(text), kind)
        assert caught.value.field == "filterQuery"
        if message:
            assert message in str(caught.value)
    with pytest.raises(ValueError, match="unknown registry kind"):
        where(parse("a = 1"), "pipeline")


def test_every_kind_has_the_common_fields() -> None:
    common = {"id", "name", "externalId", "description", "createTimeSinceEpoch"}
    for kind in KINDS:
        assert common <= set(FIELDS[kind]), kind
        condition = where(parse("name = 'x' AND id = '1'"), kind)
        sql = str(select(EntityRow.id).where(condition).compile(dialect=sqlite.dialect()))
        assert "registry_entities.name = ? AND registry_entities.id = ?" in sql


NS = "team"


@pytest.fixture
def registry(database: Database) -> Iterator[Database]:
    database.migrate([MIGRATIONS])
    yield database


def add(
    db: Database,
    kind: str,
    name: str,
    *,
    subtype: str = "",
    parent: int = 0,
    state: str = "",
    external_id: str | None = None,
    uri: str = "",
    created: int = 1_000,
    updated: int = 1_000,
    body: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
) -> int:
    """Inserts an entity and its custom properties (typed as their Python values are)
    and returns its id."""
    with db.session() as s:
        row = EntityRow(
            namespace=NS,
            kind=kind,
            subtype=subtype,
            parent_id=parent,
            name=name,
            external_id=external_id,
            state=state,
            uri=uri,
            created=created,
            updated=updated,
            body=json.dumps(body or {}),
        )
        s.add(row)
        s.flush()
        for key, value in (properties or {}).items():
            typed = {bool: "bool", int: "int", float: "double", str: "string"}[type(value)]
            s.add(PropertyRow(entity_id=row.id, name=key, type=typed, **{f"{typed}_value": value}))
        return row.id


def names(db: Database, kind: str, text: str) -> list[str]:
    statement = (
        select(EntityRow.name)
        .where(EntityRow.namespace == NS, EntityRow.kind == kind, where(parse(text), kind))
        .order_by(EntityRow.name)
    )
    with db.session(readonly=True) as s:
        return list(s.execute(statement).scalars())


@pytest.fixture
def models(registry: Database) -> dict[str, int]:
    db = registry
    return {
        "Alpha": add(
            db, "registered_model", "Alpha", state="LIVE", external_id="ext-1",
            created=1000, updated=5000,
            body={"owner": "alice", "description": "First Model", "license": "MIT"},
            properties={
                "accuracy": 0.97, "framework": "pytorch", "epochs": 10, "ready": True,
                "my-prop": "x-1", "mlflow.source.type": "notebook",
            },
        ),
        "beta": add(
            db, "registered_model", "beta", state="ARCHIVED", created=2000, updated=4000,
            body={"owner": "bob", "description": "second: 50% done"},
            properties={
                "accuracy": 0.90, "framework": "TensorFlow", "epochs": 3, "ready": False,
                "lr": 5.0,
            },
        ),
        "gamma_1": add(
            db, "registered_model", "gamma_1", state="LIVE", external_id="ext-3",
            created=3000, updated=3000,
            body={"owner": "Alice", "description": "500 models"},
            properties={"accuracy": 1, "framework": "pytorch-lightning", "epochs": 10.0},
        ),
        "star*[1]?": add(db, "registered_model", "star*[1]?", state="LIVE", created=4000),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ["Alpha", "beta", "gamma_1", "star*[1]?"]),
        ('name = "Alpha"', ["Alpha"]),
        ("name != 'Alpha'", ["beta", "gamma_1", "star*[1]?"]),
        ("name <> 'Alpha'", ["beta", "gamma_1", "star*[1]?"]),
        ("name > 'alpha'", ["beta", "gamma_1", "star*[1]?"]),  # byte order: 'A' < 'a'
        ("name <= 'beta'", ["Alpha", "beta"]),
        ("name IN ('Alpha', 'beta', 'nope')", ["Alpha", "beta"]),
        ("name IN ()", []),
        ("createTimeSinceEpoch > 1500", ["beta", "gamma_1", "star*[1]?"]),
        ('createTimeSinceEpoch >= "3000"', ["gamma_1", "star*[1]?"]),
        ("lastUpdateTimeSinceEpoch < 4500", ["beta", "gamma_1", "star*[1]?"]),
        ("lastUpdateTimeSinceEpoch <= 3000.5", ["gamma_1", "star*[1]?"]),
        ("externalId = 'ext-1'", ["Alpha"]),
        ("externalId != 'ext-1'", ["gamma_1"]),  # only entities that have one
        ("state = 'LIVE'", ["Alpha", "gamma_1", "star*[1]?"]),
        ("owner = 'alice'", ["Alpha"]),
        ("owner ILIKE 'ALICE'", ["Alpha", "gamma_1"]),
        ("owner LIKE 'a%'", ["Alpha"]),  # LIKE is case-sensitive on both databases
        ("owner LIKE 'A%'", ["gamma_1"]),
        ("name LIKE '%a'", ["Alpha", "beta"]),
        ("name LIKE 'bet_'", ["beta"]),
        ("name LIKE 'gamma\\_%'", ["gamma_1"]),
        ("name LIKE 'star*[1]?'", ["star*[1]?"]),  # GLOB's wildcards are plain characters
        ("name LIKE 's*'", []),
        ("name LIKE 'star_[1]_'", ["star*[1]?"]),
        ("description LIKE '%50%'", ["beta", "gamma_1"]),
        ("description LIKE '%50\\%%'", ["beta"]),
        ("description ILIKE 'first%'", ["Alpha"]),
        ("description = 'First Model'", ["Alpha"]),
        ("license = 'MIT'", ["Alpha"]),
        ("accuracy > 0.95", ["Alpha"]),  # a float compares double_value, as upstream
        ("accuracy = 1", ["gamma_1"]),  # an integer: int_value or double_value
        ("epochs = 10", ["Alpha", "gamma_1"]),
        ("epochs.int_value = 10", ["Alpha"]),
        ("epochs.double_value = 10", ["gamma_1"]),
        ("epochs IN (3, 10)", ["Alpha", "beta", "gamma_1"]),
        ("epochs != 10", ["beta"]),
        ("lr > 1", ["beta"]),
        ("framework = 'pytorch'", ["Alpha"]),
        ("framework LIKE 'pytorch%'", ["Alpha", "gamma_1"]),
        ("framework ILIKE 'tensorflow'", ["beta"]),
        ("framework.string_value IN ('pytorch', 'TensorFlow')", ["Alpha", "beta"]),
        ("framework > 'q'", []),
        ("ready = true", ["Alpha"]),
        ("ready = FALSE", ["beta"]),
        ("ready != true", ["beta"]),  # only entities that have the property
        ("ready.bool_value IN (true, false)", ["Alpha", "beta"]),
        ("`my-prop` = 'x-1'", ["Alpha"]),
        ("`my-prop`.string_value LIKE 'x-%'", ["Alpha"]),
        ("`mlflow.source.type` = 'notebook'", ["Alpha"]),
        ("mlflow.source.type = 'notebook'", ["Alpha"]),
        ("nothing = 'x'", []),
        ("name = 'beta' OR state = 'LIVE' AND owner = 'alice'", ["Alpha", "beta"]),
        ("(name = 'beta' OR state = 'LIVE') AND owner = 'alice'", ["Alpha"]),
        ("(framework LIKE 'py%' OR lr > 1) AND NOT_A_FIELD = 'x' OR id = 0", []),
    ],
)
def test_registered_models_filter(
    registry: Database, models: dict[str, int], text: str, expected: list[str]
) -> None:
    assert names(registry, "registered_model", text) == expected


def test_ids_compare_as_numbers_given_as_strings(
    registry: Database, models: dict[str, int]
) -> None:
    alpha, beta = models["Alpha"], models["beta"]
    assert names(registry, "registered_model", f"id = '{alpha}'") == ["Alpha"]
    assert names(registry, "registered_model", f"id = {alpha}") == ["Alpha"]
    assert names(registry, "registered_model", f"id IN ('{alpha}', '{beta}')") == ["Alpha", "beta"]
    later = names(registry, "registered_model", f"id > '{alpha}'")
    assert sorted(later) == ["beta", "gamma_1", "star*[1]?"]


def test_other_kinds_filter_on_their_fields(registry: Database) -> None:
    db = registry
    model = add(db, "registered_model", "m")
    other = add(db, "registered_model", "other")
    add(db, "model_version", "v1", parent=model, state="LIVE", body={"author": "carol"})
    add(db, "model_version", "v2", parent=model, state="ARCHIVED", body={"author": "dan"})
    add(db, "model_version", "v1-other", parent=other, body={"author": "carol"})
    assert names(db, "model_version", f"registeredModelId = '{model}'") == ["v1", "v2"]
    assert names(db, "model_version", "author = 'carol' AND state = 'LIVE'") == ["v1"]

    run = add(db, "experiment_run", "r1", parent=7, body={"startTimeSinceEpoch": "1700"})
    add(db, "experiment_run", "r2", parent=8, body={"status": "FINISHED", "owner": "eve"})
    assert names(db, "experiment_run", "experimentId = 7") == ["r1"]
    assert names(db, "experiment_run", "startTimeSinceEpoch > 1000") == ["r1"]
    assert names(db, "experiment_run", "status = 'FINISHED' AND owner = 'eve'") == ["r2"]

    art = {"subtype": "metric", "parent": run}
    add(db, "artifact", "loss", **art, body={"value": 0.5, "step": 3, "timestamp": "1700000000000"})
    add(db, "artifact", "acc", **art, body={"value": 0.93, "step": "12", "experimentRunId": "9"})
    add(db, "artifact", "lr", subtype="parameter", body={"value": "0.1", "parameterType": "number"})
    add(
        db,
        "artifact",
        "flag",
        subtype="parameter",
        body={"value": True, "parameterType": "boolean"},
    )
    add(
        db, "artifact", "onnx", subtype="model-artifact", uri="s3://bucket/model.onnx",
        state="LIVE", body={"modelFormatName": "onnx", "modelFormatVersion": "1"},
    )  # fmt: skip
    # values that are not numbers where numbers are expected are never matched (or errors)
    add(
        db, "artifact", "odd", subtype="metric", body={"value": "n/a", "step": "-", "timestamp": {}}
    )
    assert names(db, "artifact", "artifactType = 'metric'") == ["acc", "loss", "odd"]
    assert names(db, "artifact", "value > 0.4") == ["acc", "loss"]
    assert names(db, "artifact", "value < 1") == ["acc", "loss"]
    assert names(db, "artifact", "value = '0.1'") == ["lr"]
    assert names(db, "artifact", "step >= 3") == ["acc", "loss"]
    assert names(db, "artifact", "step IN (12, 99)") == ["acc"]
    assert names(db, "artifact", "timestamp >= 1700000000000") == ["loss"]
    assert names(db, "artifact", "experimentRunId = '9'") == ["acc"]
    assert names(db, "artifact", "parameterType = 'number'") == ["lr"]
    assert names(db, "artifact", "uri LIKE 's3://%' AND modelFormatName = 'onnx'") == ["onnx"]
    assert names(db, "artifact", "state = 'LIVE' AND modelFormatVersion = '1'") == ["onnx"]

    env = add(db, "serving_environment", "env")
    add(db, "inference_service", "svc", parent=env, state="DEPLOYED", body={"runtime": "kserve"})
    add(db, "inference_service", "svc2", parent=env + 100, state="UNDEPLOYED",
        body={"registeredModelId": str(model), "modelVersionId": "4"})  # fmt: skip
    assert names(db, "inference_service", f"servingEnvironmentId = {env}") == ["svc"]
    assert names(db, "inference_service", "desiredState = 'UNDEPLOYED'") == ["svc2"]
    assert names(db, "inference_service", f"registeredModelId = '{model}'") == ["svc2"]
    assert names(db, "inference_service", "runtime ILIKE 'KSERVE'") == ["svc"]
    add(db, "serve_model", "serve", parent=11, state="RUNNING", body={"modelVersionId": "4"})
    assert names(db, "serve_model", "lastKnownState = 'RUNNING' AND inferenceServiceId = 11") == [
        "serve"
    ]
    assert names(db, "serve_model", "modelVersionId = 4") == ["serve"]
    assert names(db, "serving_environment", "name ILIKE 'ENV'") == ["env"]


def test_injection_is_a_syntax_error_or_a_literal(
    registry: Database, models: dict[str, int]
) -> None:
    for text in [
        "name = 'x'; DROP TABLE registry_entities; --",
        "name = 'x' OR 1=1",
        "name LIKE '%'' OR 1=1 --'",
        "name = x",
    ]:
        with pytest.raises(InvalidSpec, match="syntax error"):
            parse(text)
    for text in [
        'name = "x\'; DROP TABLE registry_entities; --"',
        "name = 'x\\'; DROP TABLE registry_entities; --'",
        "`x'; DROP TABLE registry_entities; --` = 'y'",
        'owner = \'a" OR "1"="1\'',
    ]:
        assert names(registry, "registered_model", text) == [], text
    with registry.session(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(EntityRow)) == len(models)
        assert inspect(s.connection()).has_table("registry_entities")
    assert names(registry, "registered_model", "name = \"x'; --\" OR name = 'Alpha'") == ["Alpha"]


def test_the_largest_and_deepest_queries_run(registry: Database, models: dict[str, int]) -> None:
    clause = "epochs = 10 OR "
    wide = clause * ((MAX_LENGTH - 20) // len(clause)) + "name = 'beta'"
    assert names(registry, "registered_model", wide) == ["Alpha", "beta", "gamma_1"]
    deep = "name = 'beta'"
    for level in range(MAX_DEPTH):
        deep = f"(framework = 'none{level}' {'OR' if level % 2 else 'AND'} {deep})"
    assert names(registry, "registered_model", deep) == []


def test_text_orders_byte_by_byte_under_any_collation(
    registry: Database, models: dict[str, int]
) -> None:
    """A PostgreSQL column with a linguistic collation (where 'Alpha' > 'alpha') still
    compares as SQLite does."""
    if registry.engine.dialect.name != "postgresql":
        pytest.skip("SQLite compares text byte by byte already")
    with registry.session() as s:
        icu = s.scalar(sql("SELECT collname FROM pg_collation WHERE collname = 'en-US-x-icu'"))
        if icu is None:
            pytest.skip("this PostgreSQL has no ICU collation")
        s.execute(
            sql(
                'ALTER TABLE registry_entities ALTER COLUMN name TYPE varchar(255) COLLATE "en-US-x-icu"'
            )
        )
        assert s.scalar(sql("SELECT count(*) FROM registry_entities WHERE name > 'alpha'")) == 4
    assert names(registry, "registered_model", "name > 'alpha'") == ["beta", "gamma_1", "star*[1]?"]
