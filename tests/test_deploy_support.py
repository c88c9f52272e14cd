"""Shared helpers for the deploy tests: render the Kustomize overlays, validate custom resources
against vendored CRD schemas, read the Dockerfiles.

Named ``test_*`` so pytest imports it like the other support modules; it holds no tests.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if p.is_dir())
NAMESPACE = "medasr"
# Images built from this repository, by the Dockerfile that builds them.
OWN_IMAGES = {"medasr-serve": "Dockerfile.serve", "medasr-train": "Dockerfile.train"}

Obj = dict[str, Any]


def tool(name: str) -> str | None:
    """A command-line tool, preferring the one installed in this virtualenv (the pinned one)."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def need_tool(name: str) -> str:
    """The tool's path, or skip naming the package that provides it."""
    path = tool(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]' provides it)")
    return path


@functools.cache
def render(overlay: str) -> tuple[Obj, ...]:
    """``kubectl kustomize deploy/overlays/<overlay>`` as a tuple of objects."""
    kubectl = need_tool("kubectl")
    proc = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, f"kubectl kustomize {overlay} failed:\n{proc.stderr}"
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def all_objects() -> list[tuple[str, Obj]]:
    """(overlay, object) for every rendered object of every overlay."""
    return [(o, obj) for o in OVERLAYS for obj in render(o)]


def find(kind: str, name: str | None = None) -> list[Obj]:
    """Rendered objects of ``kind`` (and ``name``) across all overlays, deduplicated."""
    seen: dict[str, Obj] = {}
    for _, obj in all_objects():
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name):
            key = f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}"
            seen.setdefault(key, obj)
    return list(seen.values())


def one(kind: str, name: str) -> Obj:
    found = find(kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


WORKLOAD_KINDS = ("Deployment", "Job", "StatefulSet", "DaemonSet")
# Custom resources that run pods: kind -> the field of ``spec`` that maps each replica type
# to a replica spec with a pod ``template``.
REPLICATED_KINDS = {"PyTorchJob": "pytorchReplicaSpecs"}


def pod_templates() -> Iterator[tuple[Obj, Obj]]:
    """(workload, pod template) for every workload in every overlay, custom resources too."""
    for kind in WORKLOAD_KINDS:
        for obj in find(kind):
            yield obj, obj["spec"]["template"]
    for kind, field_name in REPLICATED_KINDS.items():
        for obj in find(kind):
            for replica in obj["spec"][field_name].values():
                yield obj, replica["template"]


def containers(pod: Obj) -> list[Obj]:
    spec = pod["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: Obj) -> dict[str, Obj]:
    """name -> env entry (``value`` or ``valueFrom``) of one container."""
    return {e["name"]: e for e in container.get("env", [])}


def configmap_env(container: Obj) -> dict[str, str]:
    """Variables a container gets from ConfigMaps through ``envFrom``."""
    out: dict[str, str] = {}
    for src in container.get("envFrom", []):
        ref = src.get("configMapRef")
        if ref:
            out.update(one("ConfigMap", ref["name"])["data"])
    return out


def plain_env(container: Obj) -> dict[str, str]:
    """envFrom ConfigMaps + literal ``env`` values (what the container sees, secrets aside)."""
    out = configmap_env(container)
    out.update({k: e["value"] for k, e in env_of(container).items() if "value" in e})
    return out


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion of command/args (unknown references stay as they are)."""
    return re.sub(
        r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), text
    )


def image_name(image: str) -> str:
    """``registry/path/name:tag`` -> ``name``."""
    return image.rsplit("/", 1)[-1].split("@")[0].split(":")[0]


# ---- vendored CRD schemas (tests/data/crds) --------------------------------------------------

CRDS = ROOT / "tests/data/crds"
_NESTED = ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf")


def _strict(schema: Any) -> Any:
    """A structural CRD schema with the API server's strict field validation made explicit:
    an object that lists its properties accepts no other field, unless it is marked
    ``x-kubernetes-preserve-unknown-fields`` (JSON Schema would accept any extra field)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) if k in _NESTED else v for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    return out


def _unique_list(validator: Any, list_type: str, instance: Any, schema: Obj) -> Iterator[Any]:
    """``x-kubernetes-list-type``: the API server refuses duplicate set items and map keys."""
    from jsonschema.exceptions import ValidationError

    if not isinstance(instance, list) or list_type not in ("set", "map"):
        return
    map_keys = schema.get("x-kubernetes-list-map-keys", [])
    seen: set[str] = set()
    for item in instance:
        key = (
            json.dumps([item.get(k) for k in map_keys])
            if list_type == "map" and isinstance(item, dict)
            else json.dumps(item, sort_keys=True)
        )
        if key in seen:
            yield ValidationError(f"duplicate entry {key} in a list of type {list_type}")
        seen.add(key)


@functools.cache
def _crd_validators(filename: str) -> tuple[str, dict[str, Any]]:
    """(kind, apiVersion -> validator) for every served version of a vendored CRD."""
    jsonschema = pytest.importorskip("jsonschema", reason="pip install -e '.[dev]'")
    crd = yaml.safe_load((CRDS / filename).read_text(encoding="utf-8"))
    spec = crd["spec"]
    cls = jsonschema.validators.extend(
        jsonschema.Draft7Validator, {"x-kubernetes-list-type": _unique_list}
    )
    formats = jsonschema.FormatChecker(formats=())
    formats.checks("int32")(lambda v: not isinstance(v, int) or -(2**31) <= v < 2**31)
    validators = {
        f"{spec['group']}/{v['name']}": cls(
            _strict(v["schema"]["openAPIV3Schema"]), format_checker=formats
        )
        for v in spec["versions"]
        if v.get("served")
    }
    return spec["names"]["kind"], validators


def crd_problems(obj: Obj, filename: str) -> list[str]:
    """What the API server would refuse in ``obj`` by the schema of the CRD in ``filename``
    (types, required fields, unknown fields, duplicate list keys; not CEL rules)."""
    kind, validators = _crd_validators(filename)
    if obj.get("kind") != kind:
        return [f"kind {obj.get('kind')} is not {kind}"]
    validator = validators.get(obj.get("apiVersion", ""))
    if validator is None:
        return [f"apiVersion {obj.get('apiVersion')} is not one of {sorted(validators)}"]
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path)))
    ]


# ---- Kubeflow Training Operator -------------------------------------------------------------


def pytorchjob_env(job: Obj) -> dict[str, str]:
    """The variables Kubeflow's Training Operator (v1.9) adds to the containers of an elastic
    PyTorchJob with Worker replicas only, after its defaulting (read from its
    ``pkg/controller.v1/pytorch/envvar.go`` and ``elastic.go``). torchrun reads each
    ``PET_X`` as the default of its ``--x`` option."""
    spec = job["spec"]
    elastic = spec["elasticPolicy"]
    worker = spec["pytorchReplicaSpecs"]["Worker"]
    lo = elastic.get("minReplicas", elastic.get("maxReplicas", worker.get("replicas", 1)))
    hi = elastic.get("maxReplicas", lo)
    port = elastic.get("rdzvPort")
    if port is None:  # the port named pytorchjob-port of the container named pytorch
        (main,) = [c for c in worker["template"]["spec"]["containers"] if c["name"] == "pytorch"]
        ports = {p.get("name"): p["containerPort"] for p in main.get("ports", [])}
        port = ports.get("pytorchjob-port", 23456)  # the operator adds 23456 when it is missing
    host = elastic.get("rdzvHost", f"{job['metadata']['name']}-worker-0")
    nproc = spec.get("nprocPerNode") or str(elastic.get("nProcPerNode", "auto"))
    env = {
        "PYTHONUNBUFFERED": "1",
        "PET_NPROC_PER_NODE": nproc,
        "PET_RDZV_ENDPOINT": f"{host}:{port}",
        "PET_RDZV_BACKEND": elastic.get("rdzvBackend", "c10d"),
        "PET_NNODES": f"{lo}:{hi}",
    }
    if "maxRestarts" in elastic:
        env["PET_MAX_RESTARTS"] = str(elastic["maxRestarts"])
    if "rdzvId" in elastic:
        env["PET_RDZV_ID"] = elastic["rdzvId"]
    if elastic.get("rdzvConf"):
        env["PET_RDZV_CONF"] = ",".join(f"{c['key']}={c['value']}" for c in elastic["rdzvConf"])
    if elastic.get("standalone"):
        env["PET_STANDALONE"] = ""
    return env


# ---- Dockerfiles -----------------------------------------------------------------------------


@dataclass
class Instruction:
    cmd: str
    args: str
    stage: int


@dataclass
class Dockerfile:
    path: Path
    instructions: list[Instruction] = field(default_factory=list)
    global_args: dict[str, str] = field(default_factory=dict)

    def all(self, cmd: str) -> list[Instruction]:
        return [i for i in self.instructions if i.cmd == cmd]

    def last(self, cmd: str) -> Instruction | None:
        found = self.all(cmd)
        return found[-1] if found else None

    def exec_form(self, cmd: str) -> list[str]:
        """The JSON (exec) form of the final stage's ENTRYPOINT or CMD."""
        inst = self.last(cmd)
        assert inst is not None, f"{self.path.name}: no {cmd}"
        value = json.loads(inst.args)
        assert isinstance(value, list), f"{self.path.name}: {cmd} must use the exec (JSON) form"
        return [str(v) for v in value]

    def env(self) -> dict[str, str]:
        """ENV of the final stage (``KEY=VALUE`` pairs, shell-quoted values allowed)."""
        last_stage = self.instructions[-1].stage
        out: dict[str, str] = {}
        for inst in self.all("ENV"):
            if inst.stage != last_stage:
                continue
            for token in shlex.split(inst.args):
                key, _, value = token.partition("=")
                out[key] = value
        return out


def parse_dockerfile(path: Path) -> Dockerfile:
    """Instructions of a Dockerfile with continuation lines joined and comments dropped."""
    df = Dockerfile(path)
    logical: list[str] = []
    buf = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    stage = -1
    for line in logical:
        cmd, _, args = line.partition(" ")
        cmd = cmd.upper()
        if cmd == "FROM":
            stage += 1
        elif cmd == "ARG" and stage == -1:
            key, _, value = args.strip().partition("=")
            df.global_args[key] = value
        df.instructions.append(Instruction(cmd, args.strip(), stage))
    return df


def dockerignore_includes(rel: str) -> bool:
    """Whether ``rel`` (a path in the repo) is part of the Docker build context."""
    rules: list[tuple[bool, str]] = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        rules.append((negate, pattern))
    parts = rel.strip("/").split("/")
    included = True
    # A path is excluded when it or one of its parent folders matches (last rule wins).
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        for negate, pattern in rules:
            if _glob_match(prefix, pattern):
                included = negate
    return included


def _glob_match(path: str, pattern: str) -> bool:
    regex = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            regex += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            regex += ".*"
            i += 2
            continue
        regex += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
        i += 1
    return re.fullmatch(regex, path) is not None
