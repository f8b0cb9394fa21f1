"""The settings of the Jupyter web app's new-notebook form (``GET /jupyter/api/config``),
in the structure of Kubeflow's ``spawner_ui_config.yaml``: under
``spawnerFormDefaults``, each field's default ``value``, its ``options`` where there are
choices, and ``readOnly`` where only the default may be used.

The defaults ship with Ketch (``spawner_ui_config.yaml`` beside this module). A server
started with ``KETCH_NOTEBOOK_SPAWNER_CONFIG`` naming a YAML file of the same structure
reads it as it starts: each field the file names replaces the default one whole. A file
that cannot be read, or a field of the wrong shape, stops the server with the file and
the field named.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from ketch.core.backend.resources import exact_quantity
from ketch.core.errors import InvalidSpec

CONFIG_ENV = "KETCH_NOTEBOOK_SPAWNER_CONFIG"
DEFAULTS = Path(__file__).with_name("spawner_ui_config.yaml")
ROOT = "spawnerFormDefaults"

#: the form's server types, and the field holding each one's images
IMAGE_FIELDS = {"jupyter": "image", "group-one": "imageGroupOne", "group-two": "imageGroupTwo"}
#: fields that are a mapping with a ``value``
_FIELDS = (
    "imagePullPolicy",
    *IMAGE_FIELDS.values(),
    "cpu",
    "memory",
    "gpus",
    "workspaceVolume",
    "dataVolumes",
    "affinityConfig",
    "tolerationGroup",
    "shm",
    "configurations",
    "environment",
)
PULL_POLICIES = ("Always", "IfNotPresent", "Never")


@dataclass(frozen=True)
class SpawnerConfig:
    """``spawnerFormDefaults``, checked; ``source`` says where it was read from."""

    defaults: dict[str, Any]
    source: str

    def has(self, name: str) -> bool:
        return isinstance(self.defaults.get(name), dict)

    def value(self, name: str) -> Any:
        found = self.defaults.get(name)
        return found.get("value") if isinstance(found, dict) else None

    def read_only(self, name: str) -> bool:
        found = self.defaults.get(name)
        return isinstance(found, dict) and found.get("readOnly") is True

    def options(self, name: str) -> list[Any]:
        found = self.defaults.get(name)
        options = found.get("options") if isinstance(found, dict) else None
        return list(options) if isinstance(options, list) else []

    def limit_factor(self, name: str) -> Fraction | None:
        """The factor of ``cpu`` or ``memory`` (``None``: no limit)."""
        found = self.defaults.get(name)
        factor = found.get("limitFactor") if isinstance(found, dict) else None
        if factor is None or str(factor).strip().lower() == "none":
            return None
        return Fraction(str(factor).strip())

    def allow_custom_image(self) -> bool:
        return self.defaults.get("allowCustomImage", True) is not False

    def gpu_vendors(self) -> dict[str, str]:
        """``limitsKey`` → ``uiName`` of the configured GPU vendors."""
        value = self.value("gpus")
        vendors = value.get("vendors") if isinstance(value, dict) else None
        return {
            str(v["limitsKey"]): str(v.get("uiName") or v["limitsKey"])
            for v in vendors or ()
            if isinstance(v, dict) and v.get("limitsKey")
        }


def _read(path: Path, what: str) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidSpec(
            f"cannot read the notebook form settings {path}: {exc.strerror or exc}", field=what
        ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidSpec(f"{path} is not valid YAML: {exc}", field=what) from None
    if not isinstance(document, dict) or not isinstance(document.get(ROOT), dict):
        raise InvalidSpec(f"{path} must hold a mapping named {ROOT}", field=what)
    return dict(document[ROOT])


def load(env: Mapping[str, str] | None = None) -> SpawnerConfig:
    """The form's settings: Ketch's defaults, with the fields of the file named by
    ``KETCH_NOTEBOOK_SPAWNER_CONFIG`` in place of theirs (see the module)."""
    env = os.environ if env is None else env
    defaults = _read(DEFAULTS, "spawner_ui_config.yaml")
    source = str(DEFAULTS)
    named = (env.get(CONFIG_ENV) or "").strip()
    if named:
        path = Path(named).expanduser()
        defaults.update(_read(path, CONFIG_ENV))
        source = str(path)
    config = SpawnerConfig(defaults, source)
    check(config)
    return config


def _problem(config: SpawnerConfig, field: str, message: str) -> InvalidSpec:
    return InvalidSpec(f"{message} (in {config.source})", field=f"{ROOT}.{field}")


def _string_list(config: SpawnerConfig, field: str, value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _problem(config, field, "must be a list of strings")


def check(config: SpawnerConfig) -> None:
    """Refuse settings the form could not use, naming the field."""
    d = config.defaults
    for name in _FIELDS:
        if name not in d:
            continue
        field = d[name]
        if not isinstance(field, dict) or "value" not in field:
            raise _problem(config, name, "must be a mapping with a value")
        if not isinstance(field.get("readOnly", False), bool):
            raise _problem(config, f"{name}.readOnly", "must be true or false")
    for key in ("allowCustomImage", "hideRegistry", "hideTag"):
        if not isinstance(d.get(key, False), bool):
            raise _problem(config, key, "must be true or false")
    if config.has("imagePullPolicy") and config.value("imagePullPolicy") not in PULL_POLICIES:
        raise _problem(
            config, "imagePullPolicy.value", f"must be one of {', '.join(PULL_POLICIES)}"
        )
    for name in IMAGE_FIELDS.values():
        if not config.has(name):
            continue
        if not isinstance(config.value(name), str) or not config.value(name).strip():
            raise _problem(config, f"{name}.value", "must be an image name")
        _string_list(config, f"{name}.options", d[name].get("options", []))
    for name in ("cpu", "memory"):
        if not config.has(name):
            continue
        try:
            exact_quantity(str(config.value(name)))
        except InvalidSpec as exc:
            raise _problem(config, f"{name}.value", exc.message) from None
        factor = d[name].get("limitFactor")
        if factor is not None and str(factor).strip().lower() != "none":
            try:
                number = Fraction(str(factor).strip())
            except ValueError:
                number = Fraction(0)
            if number < 1:
                raise _problem(
                    config, f"{name}.limitFactor", 'must be a number of 1 or more, or "none"'
                )
    if config.has("gpus"):
        gpus = config.value("gpus")
        vendors = gpus.get("vendors") if isinstance(gpus, dict) else None
        if not isinstance(vendors, list) or not all(
            isinstance(v, dict) and isinstance(v.get("limitsKey"), str) for v in vendors
        ):
            raise _problem(config, "gpus.value.vendors", "must be a list of {limitsKey, uiName}")
    for name, key, what in (
        ("affinityConfig", "configKey", "affinity"),
        ("tolerationGroup", "groupKey", "tolerations"),
    ):
        for index, option in enumerate(config.options(name)):
            if not isinstance(option, dict) or not isinstance(option.get(key), str):
                raise _problem(config, f"{name}.options[{index}]", f"must have a {key}")
            if what not in option:
                raise _problem(config, f"{name}.options[{index}]", f"must have {what}")
    if config.has("configurations"):
        _string_list(config, "configurations.value", config.value("configurations"))
    if config.has("shm") and not isinstance(config.value("shm"), bool):
        raise _problem(config, "shm.value", "must be true or false")
    if config.has("dataVolumes") and not isinstance(config.value("dataVolumes"), list):
        raise _problem(config, "dataVolumes.value", "must be a list of volumes")
    workspace = config.value("workspaceVolume")
    if config.has("workspaceVolume") and workspace is not None and not isinstance(workspace, dict):
        raise _problem(config, "workspaceVolume.value", "must be a volume, or null")
