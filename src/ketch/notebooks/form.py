"""The Jupyter web app's new-notebook form, made into a ``Notebook``
(``kubeflow.org/v1``) as Kubeflow's web app makes one: the container named like the
notebook, the image of the chosen server type, requests and limits (a limit not given
is the request times the setting's ``limitFactor``), GPUs as limits of their vendor's
resource, a workspace volume at the home and data volumes (``newPvc`` names a new
claim, ``existingSource`` an existing one), shared memory at ``/dev/shm``, PodDefault
label keys (``configurations``) set to ``"true"`` on the notebook and its pod template,
an affinity and tolerations picked by key from the settings, and the annotations the
web app writes (server type, creator, and for VS Code and RStudio the path rewrite and
RStudio's root header). Kubeflow's ``default-editor`` service account runs it.

A field the form leaves out (or sends as ``null``) takes the setting's default; but a
``workspace`` sent as ``null`` means no workspace. A field the settings mark
``readOnly`` must not be sent. Each wrong field is refused (:class:`InvalidSpec`, 400)
with its name (``cpu``, ``gpus.num``, ``datavols[1].mount``, ...).

The controller sets ``NB_PREFIX`` and the rest of what a server needs when it
starts the notebook (:mod:`ketch.notebooks.launch`), as Kubeflow's controller does.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from fractions import Fraction
from typing import Any

from ketch.core.backend.resources import exact_quantity
from ketch.core.errors import InvalidSpec
from ketch.notebooks.spawner import IMAGE_FIELDS, PULL_POLICIES, SpawnerConfig
from ketch.notebooks.spec import GROUP, KIND, SERVER_TYPE

CREATOR = "notebooks.kubeflow.org/creator"
REWRITE_URI = "notebooks.kubeflow.org/http-rewrite-uri"
REQUEST_HEADERS = "notebooks.kubeflow.org/http-headers-request-set"
SERVICE_ACCOUNT = "default-editor"
NAME_PLACEHOLDER = "{notebook-name}"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_SPLIT_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)\s*$")


@dataclass
class Claim:
    """A claim the form asks to be made (``newPvc``), and the field that names it."""

    name: str
    field: str


@dataclass
class Form:
    """What a form makes: the Notebook's manifest, and the new claims it mounts."""

    manifest: dict[str, Any]
    claims: list[Claim] = field(default_factory=list)


def _random(size: int) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(size))


class _Reader:
    """Reads the form's fields, with the settings' defaults and read-only rules."""

    def __init__(self, body: Mapping[str, Any], config: SpawnerConfig) -> None:
        self.body = body
        self.config = config

    def get(self, name: str, setting: str | None = None) -> Any:
        """The form's ``name`` field, else the default of ``setting`` (default: the
        same name); a field the settings mark read-only must not be sent."""
        setting = setting or name
        sent = self.body.get(name)
        if self.config.read_only(setting):
            if name in self.body:
                raise InvalidSpec(
                    f"{name} is read-only on this server: leave it out of the form "
                    f"(the server uses {self.config.value(setting)!r})",
                    field=name,
                )
            return self.config.value(setting)
        if sent is None:
            return self.config.value(setting)
        return sent


def _text(value: Any, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidSpec(f"must be a string, got {_shown(value)}", field=name)
    return str(value).strip()


def _shown(value: Any) -> str:
    """A sent value as an error message shows it."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _quantity(value: Any, name: str, what: str) -> tuple[str, Fraction]:
    text = _text(value, name)
    try:
        amount = exact_quantity(text, what)
    except InvalidSpec as exc:
        raise InvalidSpec(exc.message, field=name, hint=exc.hint) from None
    if amount <= 0:
        raise InvalidSpec(f"must be more than 0, got {text!r}", field=name)
    return text, amount


def _decimal(value: Fraction) -> str:
    """``value`` with at most three decimals (rounded up), without trailing zeros."""
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    shown = exact.quantize(Decimal("0.001"), rounding=ROUND_CEILING).normalize()
    return format(shown, "f")


def scaled(quantity: str, factor: Fraction) -> str:
    """``quantity`` times ``factor``, in the quantity's own unit (``1.0Gi`` × 1.2 is
    ``1.2Gi``, ``0.5`` × 1.2 is ``0.6``)."""
    match = _SPLIT_QUANTITY.match(quantity)
    if match is None:  # an exponent: a plain number
        return _decimal(exact_quantity(quantity) * factor)
    return _decimal(Fraction(match.group(1)) * factor) + match.group(2)


def _resource(
    reader: _Reader, request_name: str, limit_name: str, what: str
) -> tuple[str, str | None]:
    """The request and limit of ``cpu`` or ``memory`` (limit ``None``: none)."""
    request, amount = _quantity(reader.get(request_name), request_name, what)
    sent = reader.body.get(limit_name)
    if sent is None or (isinstance(sent, str) and not sent.strip()):
        factor = reader.config.limit_factor(request_name)
        if factor is None:
            return request, None
        return request, scaled(request, factor)
    limit, limit_amount = _quantity(sent, limit_name, what)
    if limit_amount < amount:
        raise InvalidSpec(
            f"{limit!r} is less than the request ({request_name} {request!r}): a limit must "
            "be at least the request",
            field=limit_name,
        )
    return request, limit


def _gpus(reader: _Reader) -> tuple[str, str] | None:
    """``(vendor's limitsKey, how many)``, or ``None`` for no GPUs."""
    value = reader.get("gpus")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidSpec(
            f"must be an object with num and vendor, got {_shown(value)}", field="gpus"
        )
    num = value.get("num", "none")
    if num is None or num == "none" or num == 0 or num == "0":
        return None
    if isinstance(num, bool) or not isinstance(num, int | str) or not str(num).isdigit():
        raise InvalidSpec(
            f'must be "none" or a whole number of GPUs, got {num!r}', field="gpus.num"
        )
    vendor = value.get("vendor")
    vendors = reader.config.gpu_vendors()
    if not isinstance(vendor, str) or not vendor:
        raise InvalidSpec("Required value: the GPUs' vendor (its limitsKey)", field="gpus.vendor")
    if vendor not in vendors:
        raise InvalidSpec(
            f"{vendor!r} is not a GPU vendor of this server; use one of "
            f"{', '.join(vendors) or '(none configured)'}",
            field="gpus.vendor",
        )
    return vendor, str(int(num))


def _image(reader: _Reader, server_type: str) -> str:
    setting = IMAGE_FIELDS[server_type]
    custom = reader.body.get("customImage")
    if custom:
        if not reader.config.allow_custom_image():
            raise InvalidSpec(
                "this server allows only the images of its options: send image instead",
                field="customImage",
            )
        image = _text(reader.get("customImage", setting), "customImage")
        name = "customImage"
    else:
        image = _text(reader.get("image", setting), "image")
        name = "image"
    if not image:
        raise InvalidSpec("Required value: an image name", field=name)
    return image


def is_claim_name(name: str) -> bool:
    """Whether ``name`` may name a claim (a DNS-1123 subdomain)."""
    return 0 < len(name) <= 253 and _DNS_SUBDOMAIN.match(name) is not None


def _claim_name(value: Any, where: str, notebook: str) -> str:
    name = _text(value, where).replace(NAME_PLACEHOLDER, notebook)
    if not is_claim_name(name):
        raise InvalidSpec(
            f"{name!r} is not a valid PersistentVolumeClaim name: use lower-case letters, "
            "digits, '-' and '.'",
            field=where,
        )
    return name


def _volume(value: Any, where: str, notebook: str) -> tuple[dict[str, Any], str, Claim | None]:
    """A form volume as ``(pod volume, mount path, new claim or None)``."""
    if not isinstance(value, dict):
        raise InvalidSpec(
            f"must be an object with mount and newPvc or existingSource, got {_shown(value)}",
            field=where,
        )
    mount = value.get("mount")
    if not isinstance(mount, str) or not mount.startswith("/") or ".." in mount.split("/"):
        raise InvalidSpec(
            f"must be an absolute path without '..', got {_shown(mount)}", field=f"{where}.mount"
        )
    new, existing = value.get("newPvc"), value.get("existingSource")
    if (new is None) == (existing is None):
        raise InvalidSpec("must have either newPvc or existingSource, not both", field=where)
    if new is not None:
        at = f"{where}.newPvc"
        metadata = new.get("metadata") if isinstance(new, dict) else None
        if not isinstance(metadata, dict):
            raise InvalidSpec("Required value: the claim's metadata", field=f"{at}.metadata")
        if metadata.get("namespace") not in (None, ""):
            raise InvalidSpec(
                "a new claim is made in the notebook's namespace: leave namespace out",
                field=f"{at}.metadata.namespace",
            )
        if metadata.get("name"):
            claim = _claim_name(metadata["name"], f"{at}.metadata.name", notebook)
        elif metadata.get("generateName"):
            prefix = _text(metadata["generateName"], f"{at}.metadata.generateName")
            claim = _claim_name(prefix + _random(5), f"{at}.metadata.generateName", notebook)
        else:
            raise InvalidSpec("Required value: name or generateName", field=f"{at}.metadata.name")
        spec = new.get("spec") or {}
        storage = (
            ((spec.get("resources") or {}).get("requests") or {}).get("storage")
            if isinstance(spec, dict)
            else None
        )
        if storage is not None:
            _quantity(storage, f"{at}.spec.resources.requests.storage", "storage")
        volume = {"name": claim, "persistentVolumeClaim": {"claimName": claim}}
        return volume, mount, Claim(claim, f"{at}.metadata.name")
    at = f"{where}.existingSource"
    if not isinstance(existing, dict) or not existing:
        raise InvalidSpec("must name a volume source (persistentVolumeClaim, ...)", field=at)
    pvc = existing.get("persistentVolumeClaim")
    if pvc is not None:
        claim_name = pvc.get("claimName") if isinstance(pvc, dict) else None
        claim = _claim_name(claim_name, f"{at}.persistentVolumeClaim.claimName", notebook)
        source = {**pvc, "claimName": claim}
        return {"name": claim, "persistentVolumeClaim": source}, mount, None
    return {"name": f"existing-source-volume-{_random(8)}", **existing}, mount, None


def _picked(reader: _Reader, name: str, key: str, what: str) -> Any:
    """The ``what`` of the option of setting ``name`` whose ``key`` the form names
    (``None``: none picked)."""
    chosen = reader.get(name)
    if chosen is None or chosen in ("", "none"):
        return None
    if not isinstance(chosen, str):
        raise InvalidSpec(
            f"must be the {key} of one of the options, got {_shown(chosen)}", field=name
        )
    for option in reader.config.options(name):
        if isinstance(option, dict) and option.get(key) == chosen:
            return option.get(what)
    keys = [str(o.get(key)) for o in reader.config.options(name) if isinstance(o, dict)]
    raise InvalidSpec(
        f"{chosen!r} is not one of this server's options ({', '.join(keys) or 'none configured'})",
        field=name,
    )


def notebook_name(body: Mapping[str, Any]) -> str:
    """The form's ``name``, checked."""
    name = body.get("name")
    if name is None or name == "":
        raise InvalidSpec("Required value: the notebook's name", field="name")
    if not isinstance(name, str) or len(name) > 63 or not _DNS_LABEL.match(name):
        raise InvalidSpec(
            f"{name!r} is not a valid notebook name: use at most 63 lower-case letters, "
            "digits and '-', starting and ending with a letter or digit",
            field="name",
            hint="for example 'my-notebook'",
        )
    return name


def build(body: Mapping[str, Any], config: SpawnerConfig, namespace: str, creator: str) -> Form:
    """The Notebook the form ``body`` asks for in ``namespace`` (see the module)."""
    name = notebook_name(body)
    reader = _Reader(body, config)
    server_type = body.get("serverType")
    if server_type in (None, ""):
        server_type = "jupyter"
    if server_type not in IMAGE_FIELDS:
        raise InvalidSpec(
            f"{server_type!r} is not a server type: use jupyter, group-one (VS Code) or "
            "group-two (RStudio)",
            field="serverType",
        )
    image = _image(reader, server_type)
    pull = reader.get("imagePullPolicy") or "IfNotPresent"
    if pull not in PULL_POLICIES:
        raise InvalidSpec(
            f"{pull!r} must be one of {', '.join(PULL_POLICIES)}", field="imagePullPolicy"
        )
    cpu, cpu_limit = _resource(reader, "cpu", "cpuLimit", "cpu")
    memory, memory_limit = _resource(reader, "memory", "memoryLimit", "memory")
    requests = {"cpu": cpu, "memory": memory}
    limits: dict[str, str] = {}
    if cpu_limit is not None:
        limits["cpu"] = cpu_limit
    if memory_limit is not None:
        limits["memory"] = memory_limit
    gpus = _gpus(reader)
    if gpus is not None:
        limits[gpus[0]] = gpus[1]

    annotations = {SERVER_TYPE: server_type, CREATOR: creator}
    if server_type in ("group-one", "group-two"):
        annotations[REWRITE_URI] = "/"
    if server_type == "group-two":
        annotations[REQUEST_HEADERS] = (
            '{"X-RStudio-Root-Path":"/notebook/%s/%s/"}' % (namespace, name)  # noqa: UP031
        )
    labels = {"app": name}
    configurations = reader.get("configurations")
    if configurations is None:
        configurations = []
    if not isinstance(configurations, list):
        raise InvalidSpec(
            f"must be a list of PodDefault label keys, got {_shown(configurations)}",
            field="configurations",
        )
    template_labels: dict[str, str] = {}
    for index, label in enumerate(configurations):
        prefix, _, last = label.rpartition("/") if isinstance(label, str) else ("", "", "")
        if (
            not last
            or len(last) > 63
            or not _LABEL_NAME.match(last)
            or (prefix and not _DNS_SUBDOMAIN.match(prefix))
        ):
            raise InvalidSpec(
                f"{label!r} is not a label key (a PodDefault's selector label)",
                field=f"configurations[{index}]",
            )
        labels[label] = "true"
        template_labels[label] = "true"

    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": pull,
        "resources": {"requests": requests, **({"limits": limits} if limits else {})},
        "volumeMounts": [],
        "env": [],
    }
    pod: dict[str, Any] = {
        "serviceAccountName": SERVICE_ACCOUNT,
        "containers": [container],
        "volumes": [],
    }
    affinity = _picked(reader, "affinityConfig", "configKey", "affinity")
    if affinity is not None:
        pod["affinity"] = affinity
    tolerations = _picked(reader, "tolerationGroup", "groupKey", "tolerations")
    if tolerations:
        pod["tolerations"] = list(tolerations)

    claims: list[Claim] = []
    volumes: list[tuple[Any, str]] = []
    if (
        "workspace" in body
        and body["workspace"] is None
        and not config.read_only("workspaceVolume")
    ):
        workspace = None
    else:
        workspace = reader.get("workspace", "workspaceVolume")
    if workspace is not None:
        volumes.append((workspace, "workspace"))
    datavols = reader.get("datavols", "dataVolumes")
    if datavols is None:
        datavols = []
    if not isinstance(datavols, list):
        raise InvalidSpec(f"must be a list of volumes, got {_shown(datavols)}", field="datavols")
    volumes += [(v, f"datavols[{i}]") for i, v in enumerate(datavols)]
    mounts: dict[str, str] = {}
    for value, where in volumes:
        volume, mount, claim = _volume(value, where, name)
        if mount in mounts:
            raise InvalidSpec(
                f"{mount} is already the mount path of {mounts[mount]}", field=f"{where}.mount"
            )
        mounts[mount] = where
        if claim is not None:
            if any(c.name == claim.name for c in claims):
                raise InvalidSpec(f"claim {claim.name!r} is asked for twice", field=claim.field)
            claims.append(claim)
        if not any(v["name"] == volume["name"] for v in pod["volumes"]):
            pod["volumes"].append(volume)
        container["volumeMounts"].append({"name": volume["name"], "mountPath": mount})

    shm = reader.get("shm")
    if shm is not None and not isinstance(shm, bool):
        raise InvalidSpec(f"must be true or false, got {_shown(shm)}", field="shm")
    if shm:
        if "/dev/shm" in mounts:
            raise InvalidSpec(f"/dev/shm is the mount path of {mounts['/dev/shm']}", field="shm")
        pod["volumes"].append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
        container["volumeMounts"].append({"name": "dshm", "mountPath": "/dev/shm"})

    template: dict[str, Any] = {"spec": pod}
    if template_labels:
        template["metadata"] = {"labels": template_labels}
    manifest = {
        "apiVersion": f"{GROUP}/v1",
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {"template": template},
    }
    return Form(manifest, claims)
