"""deploy/: static validation and the cross-references between the rendered manifests.

The tools (hadolint, yamllint, kubectl's kustomize, kubernetes-validate) run through
``scripts/validate_deploy.sh``; the custom resources are validated against models generated
from their CRD schemas (KEDA, Prometheus Operator), against the published CRD schema itself
(Kubeflow's PyTorchJob, vendored in tests/data/crds) or their required fields (Karpenter);
everything else here checks that names, selectors, ports, paths, routes, settings and
metric names agree between files and with the code of ``medasr serve`` and ``medasr train``.
"""

from __future__ import annotations

import copy
import hashlib
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from medasr_cli import __version__
from test_deploy_support import (
    CRDS,
    NAMESPACE,
    OVERLAYS,
    OWN_IMAGES,
    ROOT,
    Obj,
    all_objects,
    configmap_env,
    containers,
    crd_problems,
    env_of,
    expand,
    find,
    image_name,
    need_tool,
    one,
    parse_dockerfile,
    plain_env,
    pod_templates,
    pytorchjob_env,
    tool,
)

CLUSTER_SCOPED = {"Namespace", "StorageClass", "NodePool", "EC2NodeClass"}


# ---- tools ----------------------------------------------------------------------------------


def test_validate_deploy_script(tmp_path: Path) -> None:
    """hadolint, yamllint, kustomize rendering and kubernetes-validate --strict all pass."""
    for name in ("hadolint", "yamllint", "kubectl", "kubernetes-validate"):
        need_tool(name)
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts/validate_deploy.sh")],
        capture_output=True, text=True, check=False, timeout=300,
        env={"PATH": f"{Path(tool('kubectl') or '').parent}:/usr/bin:/bin", "OUT": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.stem for p in tmp_path.glob("*.yaml")) == OVERLAYS


def test_every_overlay_renders_and_is_labelled() -> None:
    assert OVERLAYS, "no overlays in deploy/overlays"
    for overlay, obj in all_objects():
        meta = obj["metadata"]
        assert meta.get("labels", {}).get("app.kubernetes.io/part-of") == "medasr", (overlay, meta)
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in meta, (overlay, meta["name"])
        else:
            assert meta.get("namespace") == NAMESPACE, (overlay, obj["kind"], meta["name"])
    assert one("Namespace", NAMESPACE)


# ---- custom resources -----------------------------------------------------------------------


def _unknown_keys(given: Any, dumped: Any, where: str = "") -> list[str]:
    """Keys of ``given`` that the model dropped (pydantic ignores unknown fields)."""
    if isinstance(given, dict) and isinstance(dumped, dict):
        out = []
        for k, v in given.items():
            if k not in dumped:
                out.append(f"{where}.{k}")
            else:
                out += _unknown_keys(v, dumped[k], f"{where}.{k}")
        return out
    if isinstance(given, list) and isinstance(dumped, list):
        return [u for i, (a, b) in enumerate(zip(given, dumped, strict=False))
                for u in _unknown_keys(a, b, f"{where}[{i}]")]  # fmt: skip
    return []


def _crd_models() -> dict[str, Any]:
    keda = pytest.importorskip("cloudcoil.models.keda.v1alpha1", reason="pip install -e '.[dev]'")
    prom = pytest.importorskip("cloudcoil.models.prometheus_operator.v1")
    return {"ScaledObject": keda.ScaledObject, "ServiceMonitor": prom.ServiceMonitor}


def test_custom_resources_match_their_crd_schemas() -> None:
    """KEDA ScaledObject and ServiceMonitor: types, required fields and no unknown fields."""
    models = _crd_models()
    checked = 0
    for kind, model in models.items():
        for obj in find(kind):
            parsed = model.model_validate(obj)
            dumped = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
            assert _unknown_keys(obj, dumped) == [], f"{kind}: fields not in the CRD schema"
            checked += 1
    assert checked == 2
    broken = copy.deepcopy(one("ScaledObject", "medasr-serve"))
    broken["spec"]["triggers"][0]["metadata"]["threshold"] = 1  # must be a string
    with pytest.raises(ValueError):
        models["ScaledObject"].model_validate(broken)


PYTORCHJOB_CRD = "kubeflow.org_pytorchjobs.yaml"
# Values the operator accepts where the CRD schema only says "string".
RESTART_POLICIES = ("Always", "OnFailure", "Never", "ExitCode")
CLEAN_POD_POLICIES = ("All", "Running", "None")
RDZV_BACKENDS = ("c10d", "etcd", "etcd-v2")


def _pytorchjob_problems(job: Obj) -> list[str]:
    """The CRD schema (strict: unknown fields are errors), then the rules that the Training
    Operator's admission webhook and controller enforce and the schema does not express."""
    problems = crd_problems(job, PYTORCHJOB_CRD)
    spec = job.get("spec", {})
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", job["metadata"]["name"]):
        problems.append("metadata.name: not a DNS-1035 label")
    replicas = spec.get("pytorchReplicaSpecs", {})
    elastic = spec.get("elasticPolicy")
    problems += [f"replica type {t}: only Master or Worker" for t in replicas
                 if t not in ("Master", "Worker")]  # fmt: skip
    if elastic is not None and "Worker" not in replicas:
        problems.append("elasticPolicy needs a Worker replica spec")
    if elastic is not None and "nProcPerNode" in elastic and "nprocPerNode" in spec:
        problems.append("elasticPolicy.nProcPerNode must not be used with nprocPerNode")
    for rtype, replica in replicas.items():
        if replica.get("restartPolicy", "OnFailure") not in RESTART_POLICIES:
            problems.append(f"{rtype}.restartPolicy: {replica['restartPolicy']}")
        pod_spec = replica.get("template", {}).get("spec", {})
        if "pytorch" not in [c.get("name") for c in pod_spec.get("containers", [])]:
            problems.append(f"{rtype}: no container named pytorch")
    clean = spec.get("runPolicy", {}).get("cleanPodPolicy", "None")
    if clean not in CLEAN_POD_POLICIES:
        problems.append(f"cleanPodPolicy: {clean}")
    backend = (elastic or {}).get("rdzvBackend", "c10d")
    if backend not in RDZV_BACKENDS:
        problems.append(f"rdzvBackend: {backend}")
    return problems


def test_pytorchjob_matches_its_crd_schema() -> None:
    """The training job against the vendored kubeflow.org/v1 PyTorchJob CRD (whose pod
    templates are fully typed) and the operator's own admission rules."""
    jobs = find("PyTorchJob")
    assert [j["metadata"]["name"] for j in jobs] == ["medasr-train"]
    for job in jobs:
        assert _pytorchjob_problems(job) == []


_WORKER = "spec.pytorchReplicaSpecs.Worker"
_MAIN = f"{_WORKER}.template.spec.containers.0"


@pytest.mark.parametrize(
    ("path", "value", "found"),
    [
        ("spec.elasticPolicy.maxReplicas", "2", "is not of type 'integer'"),
        ("spec.elasticPolicy.maxRestart", 3, "'maxRestart' was unexpected"),  # a typo
        (f"{_WORKER}.replicas", 2.5, "is not of type 'integer'"),
        # The pod templates are typed too: unknown fields, types, formats, duplicate keys.
        (f"{_MAIN}.resource", {"limits": {}}, "'resource' was unexpected"),
        (f"{_WORKER}.template.spec.nodeSelecter", {}, "'nodeSelecter' was unexpected"),
        (f"{_MAIN}.ports.0.containerPort", "29400", "is not of type 'integer'"),
        (f"{_MAIN}.ports.0.containerPort", 2**31, "is not a 'int32'"),
        (f"{_MAIN}.env.99", {"name": "HF_HOME", "value": "/tmp"}, 'duplicate entry ["HF_HOME"]'),
        ("apiVersion", "kubeflow.org/v2", "is not one of ['kubeflow.org/v1']"),
        # The operator's admission rules.
        (f"{_WORKER}.restartPolicy", "OnFail", "restartPolicy: OnFail"),
        (f"{_MAIN}.name", "train", "no container named pytorch"),
        ("spec.elasticPolicy.nProcPerNode", 8, "must not be used with nprocPerNode"),
        ("spec.runPolicy.cleanPodPolicy", "Never", "cleanPodPolicy: Never"),
        ("spec.pytorchReplicaSpecs.Chief", {"replicas": 1}, "only Master or Worker"),
        ("spec.elasticPolicy.rdzvBackend", "tcp", "rdzvBackend: tcp"),
    ],
)
def test_pytorchjob_checks_catch(path: str, value: Any, found: str) -> None:
    broken = copy.deepcopy(one("PyTorchJob", "medasr-train"))
    *parents, last = path.split(".")
    node: Any = broken
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list) and int(last) >= len(node):
        node.append(value)
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    problems = _pytorchjob_problems(broken)
    assert any(found in p for p in problems), f"{path}={value!r}: {problems}"


def test_vendored_crds_are_the_published_files() -> None:
    """Each vendored CRD still has the sha256 recorded beside it (tests/data/crds/README.md)."""
    readme = (CRDS / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+\.yaml)` \|.*?\| `([0-9a-f]{64})` \|", readme, re.M)
    assert {name for name, _ in rows} == {p.name for p in CRDS.glob("*.yaml")}
    for name, sha in rows:
        assert hashlib.sha256((CRDS / name).read_bytes()).hexdigest() == sha, name


def test_karpenter_resources_have_required_fields() -> None:
    """No installable schema for Karpenter's CRDs: check what the v1 API requires."""
    (nodeclass,) = find("EC2NodeClass")
    assert nodeclass["apiVersion"] == "karpenter.k8s.aws/v1"
    spec = nodeclass["spec"]
    assert spec.get("role") or spec.get("instanceProfile")
    for key in ("amiSelectorTerms", "subnetSelectorTerms", "securityGroupSelectorTerms"):
        assert spec.get(key), key
    for term in spec["amiSelectorTerms"]:
        assert "@latest" not in term.get("alias", ""), "pin the AMI version"
    pools = find("NodePool")
    assert pools
    for pool in pools:
        assert pool["apiVersion"] == "karpenter.sh/v1"
        tspec = pool["spec"]["template"]["spec"]
        ref = tspec["nodeClassRef"]
        assert set(ref) == {"group", "kind", "name"}
        assert (ref["group"], ref["kind"]) == ("karpenter.k8s.aws", "EC2NodeClass")
        assert ref["name"] == nodeclass["metadata"]["name"]
        for req in tspec["requirements"]:
            assert {"key", "operator"} <= set(req)
            assert req["operator"] in ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")


# ---- scheduling, security, images -----------------------------------------------------------


def _tolerates(pod: Obj, taint: Obj) -> bool:
    for t in pod["spec"].get("tolerations", []):
        if t.get("effect") not in (None, taint["effect"]) or t.get("key") != taint["key"]:
            continue
        if t.get("operator") == "Exists" or t.get("value") == taint.get("value"):
            return True
    return False


def test_pods_land_on_node_pools_that_exist_and_tolerate_their_taints() -> None:
    pools = {p["metadata"]["name"]: p for p in find("NodePool")}
    for workload, pod in pod_templates():
        name = workload["metadata"]["name"]
        wanted = pod["spec"].get("nodeSelector", {}).get("karpenter.sh/nodepool")
        assert wanted in pools, f"{name}: nodeSelector names no NodePool"
        for taint in pools[wanted]["spec"]["template"]["spec"].get("taints", []):
            assert _tolerates(pod, taint), f"{name} does not tolerate {taint} of {wanted}"
        gpus = [c["resources"].get("limits", {}).get("nvidia.com/gpu") for c in containers(pod)]
        if any(gpus):
            assert _tolerates(pod, {"key": "nvidia.com/gpu", "effect": "NoSchedule"}), name
            for c in containers(pod):
                res = c["resources"]
                assert res["requests"].get("nvidia.com/gpu") == res["limits"].get("nvidia.com/gpu")


def test_pods_meet_the_restricted_pod_security_standard() -> None:
    ns = one("Namespace", NAMESPACE)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for workload, pod in pod_templates():
        name = workload["metadata"]["name"]
        spec = pod["spec"]
        sc = spec.get("securityContext", {})
        assert sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) > 0, name
        assert sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name
        assert all("hostPath" not in v for v in spec.get("volumes", [])), name
        assert spec.get("automountServiceAccountToken") is False, name
        for c in containers(pod):
            csc = c.get("securityContext", {})
            assert csc.get("allowPrivilegeEscalation") is False, (name, c["name"])
            assert csc.get("capabilities", {}).get("drop") == ["ALL"], (name, c["name"])
            assert "resources" in c and c["resources"].get("requests"), (name, c["name"])
            assert c["resources"].get("limits", {}).get("memory"), (name, c["name"])


def test_images_are_pinned_and_ours_come_from_our_dockerfiles() -> None:
    ours = set()
    for workload, pod in pod_templates():
        for c in containers(pod):
            image = c["image"]
            assert ":" in image.rsplit("/", 1)[-1], f"{image}: no tag"
            assert not image.endswith((":latest", ":main-latest")), image
            base = image_name(image)
            if base in OWN_IMAGES:
                ours.add(base)
                assert image.endswith(f":{__version__}"), (
                    f"{image}: tag is not medasr {__version__}"
                )
                df = parse_dockerfile(ROOT / OWN_IMAGES[base])
                user = df.last("USER")
                assert user is not None
                uid = int(user.args.split(":")[0])
                assert pod["spec"]["securityContext"]["runAsUser"] == uid, workload["metadata"]
    assert ours == set(OWN_IMAGES)


# ---- serve ----------------------------------------------------------------------------------


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _serve() -> tuple[Obj, Obj, Obj]:
    dep = one("Deployment", "medasr-serve")
    pod = dep["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    return dep, pod, container


def test_serve_deployment_service_scaledobject_agree() -> None:
    dep, pod, container = _serve()
    labels = pod["metadata"]["labels"]
    assert _selects(dep["spec"]["selector"]["matchLabels"], labels)
    assert "replicas" not in dep["spec"], "KEDA owns the replica count"

    svc = one("Service", "medasr-serve")
    assert svc["metadata"]["namespace"] == dep["metadata"]["namespace"]
    assert _selects(svc["spec"]["selector"], labels)
    ports = {p["name"]: p for p in container["ports"]}
    for sp in svc["spec"]["ports"]:
        target = sp["targetPort"]
        assert target in ports or target in [p["containerPort"] for p in ports.values()], sp
    port = ports["http"]["containerPort"]
    assert plain_env(container)["MEDASR_PORT"] == str(port)
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)

    so = one("ScaledObject", "medasr-serve")
    ref = so["spec"]["scaleTargetRef"]
    assert so["metadata"]["namespace"] == dep["metadata"]["namespace"]
    assert (ref.get("apiVersion"), ref.get("kind", "Deployment"), ref["name"]) == (
        "apps/v1", "Deployment", dep["metadata"]["name"],
    )  # fmt: skip
    assert 1 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"]

    pdb = one("PodDisruptionBudget", "medasr-serve")
    assert pdb["metadata"]["namespace"] == dep["metadata"]["namespace"]
    assert _selects(pdb["spec"]["selector"]["matchLabels"], labels)

    sm = one("ServiceMonitor", "medasr-serve")
    assert sm["metadata"]["namespace"] == svc["metadata"]["namespace"]
    assert _selects(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"])
    assert {e["port"] for e in sm["spec"]["endpoints"]} <= {p["name"] for p in svc["spec"]["ports"]}
    assert {e["path"] for e in sm["spec"]["endpoints"]} == {"/metrics"}


def test_keda_queries_the_metric_that_medasr_serve_exports() -> None:
    from medasr_cli.serve.metrics import ServeMetrics

    exported = ServeMetrics().render().decode()
    so = one("ScaledObject", "medasr-serve")
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    names = set(re.findall(r"\b([a-z_][a-z0-9_]*)\s*(?:\{|\[)", query))
    assert names == {"nemo_asr_request_latency_seconds_avg"}, query
    for name in names:
        assert re.search(rf"^{name} ", exported, re.M), f"medasr serve does not export {name}"
    # The reference deployment's query, scoped to our namespace.
    assert query == (
        f'avg(max_over_time(nemo_asr_request_latency_seconds_avg{{namespace="{NAMESPACE}"}}[10m]))'
    )
    float(trigger["metadata"]["threshold"])
    assert trigger["metadata"]["serverAddress"].startswith("http://prometheus-operated.monitoring.")
    sm = one("ServiceMonitor", "medasr-serve")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def _routes() -> set[tuple[str, str]]:
    from medasr_cli.serve.app import create_app
    from medasr_cli.serve.settings import ServeSettings

    # The OpenAPI document lists every route of every included router (public API).
    app = create_app(ServeSettings(model="unused.nemo"))
    paths = app.openapi()["paths"]
    return {(method.upper(), path) for path, ops in paths.items() for method in ops}


def test_probes_hit_routes_of_medasr_serve() -> None:
    _, pod, container = _serve()
    routes = _routes()
    ports = {p["name"] for p in container["ports"]}
    probes = {
        k: container[k]["httpGet"] for k in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    for kind, get in probes.items():
        assert ("GET", get["path"]) in routes, f"{kind}: GET {get['path']} is not a serve route"
        assert get["port"] in ports, kind
    assert probes["readinessProbe"]["path"] == "/ready"
    assert probes["livenessProbe"]["path"] == "/health"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "model load needs time"
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > float(plain_env(container)["MEDASR_SHUTDOWN_TIMEOUT_S"]) + 5
    assert ("POST", "/v1/audio/transcriptions") in routes and ("GET", "/metrics") in routes


def test_serve_env_vars_are_real_settings() -> None:
    """Every MEDASR_* variable given to serve is a ServeSettings field, with a valid value."""
    from medasr_cli.serve.settings import ENV_PREFIX, ServeSettings, load_settings

    fields = {ENV_PREFIX + name.upper() for name in ServeSettings.model_fields}
    _, _, container = _serve()
    given = {k: v for k, v in env_of(container).items() if k.startswith(ENV_PREFIX)}
    image_env = parse_dockerfile(ROOT / "Dockerfile.serve").env()
    assert set(given) | {k for k in image_env if k.startswith(ENV_PREFIX)} <= fields
    values = {k: e.get("value", "secret") for k, e in given.items()}
    kwargs = {k[len(ENV_PREFIX) :].lower(): v for k, v in {**image_env, **values}.items()
              if k.startswith(ENV_PREFIX)}  # fmt: skip
    settings = load_settings(**kwargs)
    assert settings.host == "0.0.0.0"


def test_fsx_claim_exists_and_serve_mounts_it_read_only() -> None:
    claims = {c["metadata"]["name"]: c for c in find("PersistentVolumeClaim")}
    classes = {c["metadata"]["name"] for c in find("StorageClass")}
    for claim in claims.values():
        assert claim["spec"]["storageClassName"] in classes
    sc = one("StorageClass", "medasr-fsx-lustre")
    assert sc["provisioner"] == "fsx.csi.aws.com"
    for workload, pod in pod_templates():
        for vol in pod["spec"].get("volumes", []):
            if "persistentVolumeClaim" in vol:
                name = vol["persistentVolumeClaim"]["claimName"]
                assert name in claims, f"{workload['metadata']['name']}: no PVC {name}"
    _, pod, container = _serve()
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    model = plain_env(container)["MEDASR_MODEL"]
    mounts = [m for m in container["volumeMounts"] if model.startswith(m["mountPath"] + "/")]
    assert len(mounts) == 1, "MEDASR_MODEL is not under a mounted volume"
    assert mounts[0]["readOnly"] is True
    assert vols[mounts[0]["name"]]["persistentVolumeClaim"]["readOnly"] is True


def test_trained_model_path_is_the_served_model_path() -> None:
    """train writes --out/model.nemo on FSx; serve reads MEDASR_MODEL through its mount of
    the same claim."""
    _, pod, container = _serve()
    model = plain_env(container)["MEDASR_MODEL"]
    (mount,) = [m for m in container["volumeMounts"] if model.startswith(m["mountPath"] + "/")]
    on_fsx = "/fsx/" + "/".join(
        p for p in (mount.get("subPath", ""), model[len(mount["mountPath"]) + 1 :]) if p
    )
    served_claim = {v["name"]: v for v in pod["spec"]["volumes"]}[mount["name"]]
    _, worker, train = _train_job()
    fsx_mount = next(m for m in train["volumeMounts"] if m["mountPath"] == "/fsx")
    assert not fsx_mount.get("readOnly") and "subPath" not in fsx_mount
    train_claim = {v["name"]: v for v in worker["template"]["spec"]["volumes"]}[fsx_mount["name"]]
    assert (
        train_claim["persistentVolumeClaim"]["claimName"]
        == served_claim["persistentVolumeClaim"]["claimName"]
    )
    out = _option([expand(a, plain_env(train)) for a in train["args"]], "--out")
    assert out == configmap_env(train)["OUT_DIR"]
    assert out + "/model.nemo" == on_fsx


# ---- gateway --------------------------------------------------------------------------------


def test_gateway_routes_transcriptions_to_medasr_with_langfuse() -> None:
    _, _, serve = _serve()
    serve_env = plain_env(serve)
    served = {
        serve_env["MEDASR_MODEL_ID"],
        *filter(None, serve_env.get("MEDASR_MODEL_ALIASES", "").split(",")),
    }
    svc = one("Service", "medasr-serve")
    base = f"http://{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local:{svc['spec']['ports'][0]['port']}/v1"

    gw = one("Deployment", "medasr-gateway")
    (c,) = gw["spec"]["template"]["spec"]["containers"]
    cm_name = next(
        v["configMap"]["name"]
        for v in gw["spec"]["template"]["spec"]["volumes"]
        if "configMap" in v
    )
    config = yaml.safe_load(one("ConfigMap", cm_name)["data"]["config.yaml"])
    assert any(a.endswith("config.yaml") for a in c["args"]) and "--config" in c["args"]
    secret_env = {k for k, e in env_of(c).items() if "secretKeyRef" in e.get("valueFrom", {})}

    def env_ref(value: str) -> str:
        assert value.startswith("os.environ/"), f"{value}: keys must come from the environment"
        name = value.split("/", 1)[1]
        assert name in secret_env, f"{name} is not set from a Secret"
        return name

    transcription = [
        m for m in config["model_list"] if m["model_info"]["mode"] == "audio_transcription"
    ]
    assert {m["model_name"] for m in transcription} >= {"medasr-clinical", "whisper-1"}
    for m in transcription:
        params = m["litellm_params"]
        provider, _, model_id = params["model"].partition("/")
        assert provider == "openai" and model_id in served, params["model"]
        assert params["api_base"] == base
        env_ref(params["api_key"])
    settings = config["litellm_settings"]
    assert "langfuse" in settings["success_callback"] and "langfuse" in settings["failure_callback"]
    env_ref(config["general_settings"]["master_key"])
    assert {"LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "LANGFUSE_HOST"} <= secret_env
    gsvc = one("Service", "medasr-gateway")
    assert _selects(gsvc["spec"]["selector"], gw["spec"]["template"]["metadata"]["labels"])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert gsvc["spec"]["ports"][0]["targetPort"] in ports
    assert str(ports["http"]) in c["args"]


def test_secrets_referenced_are_the_ones_docs_create() -> None:
    doc = (ROOT / "docs/deploy.md").read_text(encoding="utf-8")
    created: dict[str, set[str]] = {}
    for m in re.finditer(
        r"kubectl -n \S+ create secret generic (\S+)((?:\s*\\?\n?\s*--from-literal=[^\s=]+=\S*)+)",
        doc,
    ):
        created[m.group(1)] = set(re.findall(r"--from-literal=([^\s=]+)=", m.group(2)))
    refs: set[tuple[str, str]] = set()
    for _, pod in pod_templates():
        for c in containers(pod):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
    assert refs
    for name, key in refs:
        assert key in created.get(name, set()), (
            f"docs/deploy.md does not create secret {name} key {key}"
        )


# ---- train and data -------------------------------------------------------------------------


def _train_job() -> tuple[Obj, Obj, Obj]:
    """The training PyTorchJob, its Worker replica spec and that replica's one container."""
    job = one("PyTorchJob", "medasr-train")
    worker = job["spec"]["pytorchReplicaSpecs"]["Worker"]
    (container,) = worker["template"]["spec"]["containers"]
    return job, worker, container


def _option(argv: list[str], name: str) -> str:
    assert argv.count(name) == 1, f"{name} appears {argv.count(name)} times"
    return argv[argv.index(name) + 1]


def test_train_job_is_consistent() -> None:
    """One world size everywhere: Worker replicas x nprocPerNode (what the operator tells
    torchrun) = --nodes x --gpus (what medasr train plans for) = the GPUs the pods get."""
    job, worker, c = _train_job()
    spec, elastic = job["spec"], job["spec"]["elasticPolicy"]
    env = configmap_env(c)
    nodes, gpus = int(env["NNODES"]), int(env["GPUS_PER_NODE"])
    # Workers only: a Master replica brings the operator's init container, which has no
    # securityContext and is refused by the namespace's restricted Pod Security Standard.
    assert set(spec["pytorchReplicaSpecs"]) == {"Worker"}
    # A fixed size: trainer.num_nodes and the plan cannot follow a shrinking group.
    assert worker["replicas"] == elastic["minReplicas"] == elastic["maxReplicas"] == nodes
    assert spec["nprocPerNode"] == str(gpus) and "nProcPerNode" not in elastic
    res = c["resources"]
    assert int(res["limits"]["nvidia.com/gpu"]) == int(res["requests"]["nvidia.com/gpu"]) == gpus

    assert c["command"] == ["torchrun"]
    launcher = c["args"][: c["args"].index("medasr")]
    assert launcher == ["--no-python"], "torchrun flags here would override the PET_* settings"
    cli = [expand(a, plain_env(c)) for a in c["args"][len(launcher) :]]
    assert cli[:2] == ["medasr", "train"]
    assert int(_option(cli, "--nodes")) == worker["replicas"] == nodes
    assert _option(cli, "--gpus") == spec["nprocPerNode"]
    assert "--resume" in cli, "every (re)start must continue from the last checkpoint"
    assert _option(cli, "--out").startswith("/fsx/") and _option(cli, "--data").startswith("/fsx/")
    assert _option(cli, "--mlflow-uri").startswith("http")
    for ref in re.findall(r"\$\(([A-Za-z_0-9]+)\)", " ".join(c["args"])):
        assert ref in plain_env(c), f"$({ref}) is not defined"

    # What the operator gives torchrun: the c10d rendezvous on worker 0's pytorchjob-port.
    pet = pytorchjob_env(job)
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["pytorchjob-port"]
    assert pet["PET_RDZV_ENDPOINT"] == f"{job['metadata']['name']}-worker-0:{port}"
    assert (pet["PET_RDZV_BACKEND"], pet["PET_NNODES"]) == ("c10d", f"{nodes}:{nodes}")
    assert pet["PET_NPROC_PER_NODE"] == str(gpus)
    assert not {k for k in plain_env(c) if k.startswith("PET_")}, "the operator sets PET_*"
    conf = dict(kv.split("=", 1) for kv in pet["PET_RDZV_CONF"].split(","))
    assert int(conf["join_timeout"]) >= 600, "GPU nodes take minutes to start"
    # Restarts: torchrun restarts every node's processes (maxRestarts); past that, the
    # kubelet restarts the container (OnFailure, counted by backoffLimit). ExitCode would
    # fail the job when a pod whose rendezvous host was replaced exits with code 1.
    assert elastic["maxRestarts"] >= 1 and spec["runPolicy"]["backoffLimit"] >= 1
    assert worker["restartPolicy"] == "OnFailure"
    # The job is Succeeded when one worker is: keep rank 0 running until model.nemo is out.
    assert spec["runPolicy"]["cleanPodPolicy"] == "None"
    assert not find("Service", "medasr-train"), "the operator makes a Service for each pod"


def test_data_jobs_are_consistent_with_each_other_and_with_training() -> None:
    cfg = one("ConfigMap", "medasr-data")["data"]
    shards = int(cfg["SHARDS"])
    for name in ("medasr-data-script", "medasr-data-synth"):
        spec = one("Job", name)["spec"]
        assert spec["completionMode"] == "Indexed"
        assert spec["completions"] == spec["parallelism"] == shards, name
        script = spec["template"]["spec"]["containers"][0]["args"][0]
        assert "k=$((JOB_COMPLETION_INDEX + 1))" in script and '--shard "$k/$SHARDS"' in script
    for name in ("medasr-data-script", "medasr-data-synth", "medasr-data-manifest"):
        (c,) = one("Job", name)["spec"]["template"]["spec"]["containers"]
        assert configmap_env(c) == cfg
    _, _, train = _train_job()
    assert configmap_env(train)["DATA_DIR"] == cfg["RUN_DIR"] + "/manifests"
