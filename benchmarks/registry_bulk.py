"""A large Model Registry for ``benchmarks/registry_vs_mlflow.py``: registered models,
versions and their model artifacts written straight into the registry's tables of a
Ketch store before ``ketch up`` starts on it, thousands of rows a statement, as the
registry's store writes them one by one (:meth:`ketch.registry.store.Registry.create`:
each body checked by :func:`ketch.registry.entities.fields_of`, its custom properties
as typed rows).
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

FRAMEWORKS = ("sklearn", "pytorch", "xgboost", "onnx")
TEAMS = tuple(f"team-{n}" for n in range(20))


def plan(models: int, versions: int, seed: int) -> list[int]:
    """Which model each version belongs to, in the order they are registered: the first
    1% of the models hold 55% of the versions, the others share the rest."""
    big = max(1, models // 100)
    each = versions * 55 // 100 // big
    owners = [m for m in range(big) for _ in range(each)]
    small = max(1, models - big)
    owners += [big + k % small for k in range(versions - len(owners))]
    random.Random(seed).shuffle(owners)
    return owners


def bulk_load(db_url: str, models: int, versions: int, seed: int) -> dict[str, Any]:
    """Write ``models`` registered models and ``versions`` versions (each with a model
    artifact) into the registry's tables of ``db_url``, as the registry's store writes
    them (:meth:`ketch.registry.store.Registry.create`), thousands of rows a statement."""
    from sqlalchemy import func, insert, select

    from ketch.core.store.db import Database
    from ketch.registry.entities import (
        ARTIFACT,
        MODEL_ARTIFACT,
        MODEL_VERSION,
        REGISTERED_MODEL,
        Fields,
        Kind,
        fields_of,
        property_rows,
    )
    from ketch.registry.store import Registry, now_ms
    from ketch.registry.tables import EntityRow, PropertyRow

    rng = random.Random(seed)
    began = time.perf_counter()
    stamp = now_ms() - 10 * (models + 2 * versions)
    entities: list[dict[str, Any]] = []
    properties: list[dict[str, Any]] = []
    next_id = 1

    def add(kind: Kind, fields: Fields, parent: int) -> int:
        nonlocal next_id, stamp
        key, next_id, stamp = next_id, next_id + 1, stamp + 1
        entities.append(
            {
                "id": key,
                "namespace": "default",
                "kind": kind.kind,
                "subtype": fields.subtype,
                "parent_id": parent,
                "name": fields.name,
                "external_id": fields.external_id,
                "state": fields.state or "",
                "uri": fields.uri or "",
                "created": stamp,
                "updated": stamp,
                "body": json.dumps(
                    {**fields.body, "customProperties": fields.properties or {}},
                    separators=(",", ":"),
                ),
            }
        )
        properties.extend(
            {"entity_id": key, **row} for row in property_rows(fields.properties or {})
        )
        return key

    def text(value: str) -> dict[str, Any]:
        return {"metadataType": "MetadataStringValue", "string_value": value}

    with Database(db_url) as database:
        Registry(database)  # the registry's tables, migrated
        with database.session(readonly=True) as s:
            next_id = int(s.execute(select(func.max(EntityRow.id))).scalar() or 0) + 1
        model_ids: list[int] = []
        model_names: list[str] = []
        for m in range(models):
            name = f"model-{m:05d}"
            body = {
                "name": name,
                "owner": "bench",
                "description": f"model {m}",
                "customProperties": {"team": text(TEAMS[m % len(TEAMS)]), "task": text("tabular")},
            }
            model_ids.append(
                add(REGISTERED_MODEL, fields_of(REGISTERED_MODEL, body, create=True), 0)
            )
            model_names.append(name)
        counts = [0] * models
        found: list[tuple[int, str]] = []
        for owner in plan(models, versions, seed):
            counts[owner] += 1
            version = f"v{counts[owner]}"
            body = {
                "name": version,
                "registeredModelId": str(model_ids[owner]),
                "author": "bench",
                "state": "ARCHIVED" if rng.random() < 0.1 else "LIVE",
                "customProperties": {
                    "accuracy": {
                        "metadataType": "MetadataDoubleValue",
                        "double_value": rng.random(),
                    },
                    "epochs": {
                        "metadataType": "MetadataIntValue",
                        "int_value": str(rng.randint(1, 100)),
                    },
                    "framework": text(rng.choice(FRAMEWORKS)),
                    "stage": text(rng.choice(("dev", "staging", "prod"))),
                },
            }
            key = add(MODEL_VERSION, fields_of(MODEL_VERSION, body, create=True), model_ids[owner])
            artifact = {
                "name": model_names[owner],
                "artifactType": MODEL_ARTIFACT,
                "uri": f"s3://bench-models/{model_names[owner]}/{version}",
                "modelFormatName": rng.choice(FRAMEWORKS),
                "modelFormatVersion": "1",
                "state": "LIVE",
            }
            add(ARTIFACT, fields_of(ARTIFACT, artifact, create=True), key)
            if len(found) < 5000:
                found.append((owner, version))
        batch = 5000
        for rows, table in ((entities, EntityRow.__table__), (properties, PropertyRow.__table__)):
            for start in range(0, len(rows), batch):
                with database.session() as s:  # executemany of one INSERT
                    s.connection().execute(insert(table), rows[start : start + batch])
    return {
        "seconds": time.perf_counter() - began,
        "entities": len(entities),
        "properties": len(properties),
        "model_ids": model_ids,
        "model_names": model_names,
        "counts": counts,
        "versions_of": found,
    }
