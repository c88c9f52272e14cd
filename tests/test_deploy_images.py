"""Dockerfile.train / Dockerfile.serve and the Jobs' command lines, without a Docker engine.

No image is built here. Instead: the Dockerfiles are parsed and checked (pinned bases,
non-root user, exec-form ENTRYPOINT, dependency layers before the source, every COPY source
inside the build context), the build context is turned into a wheel exactly as the last
install step does, and the images' command lines (ENTRYPOINT + CMD, HEALTHCHECK) and the
Kubernetes Jobs' command lines run against the installed package.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from helpers import free_port, wait_process_ready
from test_deploy_support import (
    ROOT,
    Dockerfile,
    configmap_env,
    dockerignore_includes,
    env_of,
    expand,
    one,
    parse_dockerfile,
    plain_env,
    pytorchjob_env,
    tool,
)

DOCKERFILES = ("Dockerfile.train", "Dockerfile.serve")
VARIANTS = {"Dockerfile.train": [{}], "Dockerfile.serve": [{"VARIANT": "cuda"}, {"VARIANT": "cpu"}]}
SECRETISH = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.I)


def _sub(text: str, args: dict[str, str]) -> str:
    return re.sub(
        r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: args.get(m.group(1), m.group(0)), text
    )


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_basics(name: str) -> None:
    df = parse_dockerfile(ROOT / name)
    stages = {i.args.split()[-1] for i in df.all("FROM") if " AS " in i.args.upper()}
    for inst in df.all("FROM"):
        for build_args in VARIANTS[name]:
            image = _sub(inst.args.split()[0], {**df.global_args, **build_args})
            if image in stages:
                continue
            assert "$" not in image, f"{name}: unresolved base {image}"
            tag = image.rsplit("/", 1)[-1]
            assert ":" in tag and not tag.endswith(":latest"), f"{name}: unpinned base {image}"
    user = df.last("USER")
    assert user is not None and user.stage == df.instructions[-1].stage
    uid = user.args.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, f"{name}: USER must be a numeric non-root uid"
    assert df.exec_form("ENTRYPOINT") == ["medasr"]
    for inst in df.all("ARG") + df.all("ENV"):
        keys = [t.split("=")[0] for t in inst.args.split()]
        assert not [k for k in keys if SECRETISH.search(k)], f"{name}: secret-like {inst.args}"
    text = (ROOT / name).read_text(encoding="utf-8")
    assert "--mount=type=secret" not in text and "ADD " not in text
    # Layer order: pinned requirements are installed before the source is copied.
    order = [i for i in df.instructions if i.cmd in ("COPY", "RUN")]
    req = next(k for k, i in enumerate(order) if i.cmd == "COPY" and "deploy/docker/" in i.args)
    pip_r = next(
        k
        for k, i in enumerate(order)
        if i.cmd == "RUN" and "pip install" in i.args and " -r " in i.args
    )
    src = next(k for k, i in enumerate(order) if i.cmd == "COPY" and i.args.startswith("src "))
    assert req < pip_r < src, f"{name}: dependencies must be installed before COPY src"
    final = next(i for i in order[src:] if i.cmd == "RUN" and "pip install" in i.args)
    assert "--no-deps" in final.args, f"{name}: installing medasr must not change the pinned set"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_copy_sources_are_in_the_build_context(name: str) -> None:
    df = parse_dockerfile(ROOT / name)
    for build_args in VARIANTS[name]:
        for inst in df.all("COPY"):
            if inst.args.startswith("--from"):
                continue
            *sources, _dest = inst.args.split()
            for src in sources:
                path = _sub(src, {**df.global_args, **build_args})
                assert (ROOT / path).exists(), f"{name}: COPY {path}: no such file"
                assert dockerignore_includes(path), (
                    f"{name}: COPY {path} is excluded by .dockerignore"
                )
                if (ROOT / path).is_dir():
                    for f in (ROOT / path).rglob("*.py"):
                        if "__pycache__" not in f.parts:
                            rel = f.relative_to(ROOT).as_posix()
                            assert dockerignore_includes(rel), rel
    for junk in (
        ".venv/bin/python",
        "runs/x/model.nemo",
        "src/medasr_cli/__pycache__/x.pyc",
        ".git/HEAD",
    ):
        assert not dockerignore_includes(junk), junk


def _requirement_names(extra: str, extras: dict[str, list[str]], seen: set[str]) -> set[str]:
    out: set[str] = set()
    for req in extras[extra]:
        m = re.match(r"([A-Za-z0-9_.-]+)(\[([^\]]+)\])?", req)
        assert m
        if m.group(1) == "medasr":
            for sub in m.group(3).split(","):
                if sub not in seen:
                    seen.add(sub)
                    out |= _requirement_names(sub.strip(), extras, seen)
        else:
            out.add(re.sub(r"[-_.]+", "-", m.group(1)).lower())
    return out


@pytest.mark.parametrize(
    ("lock", "extras"),
    [("serve-cuda", ["serve"]), ("serve-cpu", ["serve"]), ("train", ["train", "synth", "piper"])],
)
def test_lock_files_pin_every_dependency(lock: str, extras: list[str]) -> None:
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins: dict[str, str] = {}
    for line in (ROOT / f"deploy/docker/{lock}.txt").read_text(encoding="utf-8").splitlines():
        m = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", line)
        if m:
            pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    wanted = {re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", d).group(0)).lower()  # type: ignore[union-attr]
              for d in project["dependencies"]}  # fmt: skip
    for extra in extras:
        wanted |= _requirement_names(extra, project["optional-dependencies"], set())
    missing = sorted(wanted - set(pins))
    assert not missing, f"deploy/docker/{lock}.txt lacks {missing}: run deploy/docker/lock.sh"
    for spec in project["optional-dependencies"]["asr"]:
        name, _, version = spec.partition("==")
        if version:
            key = re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()
            assert pins[key].split("+")[0] == version, f"{lock}: {name} != {version}"


def test_build_context_installs_as_a_wheel(tmp_path: Path) -> None:
    """`pip install --no-deps .` of the images, run on the files .dockerignore lets through."""
    ctx = tmp_path / "ctx"
    for path in [ROOT / "pyproject.toml", ROOT / "README.md", *sorted((ROOT / "src").rglob("*"))]:
        rel = path.relative_to(ROOT).as_posix()
        if path.is_file() and dockerignore_includes(rel):
            (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, ctx / rel)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(ctx), "-w", str(tmp_path / "dist")],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("medasr-*.whl")
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "medasr_cli/serve/app.py" in names and "medasr_cli/data/train/parakeet_tdt.yaml" in names


def _medasr() -> str:
    path = tool("medasr")
    assert path, "the medasr console script is not installed"
    return path


def _image_argv(df: Dockerfile) -> list[str]:
    argv = df.exec_form("ENTRYPOINT") + df.exec_form("CMD")
    assert argv[0] == "medasr"
    return [_medasr(), *argv[1:]]


def test_train_image_command_runs() -> None:
    df = parse_dockerfile(ROOT / "Dockerfile.train")
    proc = subprocess.run(_image_argv(df), capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for sub in ("train", "synth", "script", "lexicon", "manifest"):
        assert sub in proc.stdout


@pytest.mark.slow
def test_serve_image_command_starts_with_the_deployment_env(
    tiny_model: Path, tmp_path: Path
) -> None:
    """ENTRYPOINT+CMD of Dockerfile.serve, with its ENV and the Kubernetes Deployment's env,
    serves the mounted model; the probes, the HEALTHCHECK and the gateway's model id work."""
    df = parse_dockerfile(ROOT / "Dockerfile.serve")
    dep = one("Deployment", "medasr-serve")
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    port = free_port()
    models = tmp_path / "models"  # the read-only mount: the model at MEDASR_MODEL's path
    model_path = Path(plain_env(container)["MEDASR_MODEL"])
    mount = next(
        m["mountPath"]
        for m in container["volumeMounts"]
        if str(model_path).startswith(m["mountPath"] + "/")
    )
    local_model = models / model_path.relative_to(mount)
    local_model.parent.mkdir(parents=True)
    shutil.copy(tiny_model, local_model)
    local_model.parent.chmod(0o555)
    scratch = tmp_path / "scratch"  # the emptyDir at /tmp
    scratch.mkdir()
    env = {**os.environ, **df.env(), **plain_env(container)}
    env = {k: v.replace("/tmp", str(scratch)) if k in ("TMPDIR", "HOME", "NUMBA_CACHE_DIR", "MPLCONFIGDIR") else v
           for k, v in env.items()}  # fmt: skip
    env.update(
        MEDASR_MODEL=str(local_model),
        MEDASR_HOST="127.0.0.1",  # the image binds 0.0.0.0; here only loopback
        MEDASR_PORT=str(port),
        MEDASR_DEVICE="cpu",  # no GPU on this machine
        MEDASR_API_KEYS="test-key",  # from the medasr-serve-auth Secret in the cluster
        MEDASR_MAX_WAIT_MS="1",
    )
    assert (
        env_of(container)["MEDASR_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"]
        == "medasr-serve-auth"
    )
    proc = subprocess.Popen(
        _image_argv(df), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_process_ready(url, proc, timeout=180)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert (
                httpx.get(url + container[probe]["httpGet"]["path"], timeout=5).status_code == 200
            )
        health = df.last("HEALTHCHECK")
        assert health is not None
        cmd = json.loads(health.args[health.args.index("CMD") + 3 :].strip())
        assert cmd[0] == "python3"
        hc = subprocess.run(
            [sys.executable, *cmd[1:]], env=env, capture_output=True, timeout=30, check=False
        )
        assert hc.returncode == 0, hc.stderr
        metrics = httpx.get(url + "/metrics", timeout=5).text
        assert "nemo_asr_request_latency_seconds_avg" in metrics
        listed = httpx.get(
            url + "/v1/models", headers={"Authorization": "Bearer test-key"}, timeout=5
        )
        assert listed.status_code == 200
        assert env["MEDASR_MODEL_ID"] in {m["id"] for m in listed.json()["data"]}
        assert httpx.get(url + "/v1/models", timeout=5).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        local_model.parent.chmod(0o755)
    assert proc.returncode == 0, out


def _job_container(name: str) -> dict:
    (c,) = one("Job", name)["spec"]["template"]["spec"]["containers"]
    return c


def _train_workers(
    tmp_path: Path, nodes: int, *, extra: tuple[str, ...] = (), argv_tail: list[str] | None = None
) -> list[str]:
    """The PyTorchJob's Worker pods, as processes on this machine: each runs the container's
    exact command with the variables the Training Operator gives it (PET_*, computed from the
    job with the c10d rendezvous on loopback, one process per node) and the ConfigMap's.
    ``extra`` is appended to the command; ``argv_tail`` replaces its `medasr train ...` part.
    Returns each pod's output once all have exited with code 0."""
    torchrun = tool("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed (pip install -e '.[train]')")
    job = copy.deepcopy(one("PyTorchJob", "medasr-train"))
    spec = job["spec"]
    worker = spec["pytorchReplicaSpecs"]["Worker"]
    (c,) = worker["template"]["spec"]["containers"]
    worker["replicas"] = spec["elasticPolicy"]["minReplicas"] = nodes
    spec["elasticPolicy"]["maxReplicas"] = nodes
    spec["nprocPerNode"] = "1"
    spec["elasticPolicy"].update(rdzvHost="127.0.0.1", rdzvPort=free_port())
    for conf in spec["elasticPolicy"]["rdzvConf"]:
        if conf["key"] == "join_timeout":
            conf["value"] = "120"  # a failing test should not wait 30 minutes
    env = plain_env(c)
    env.update(NNODES=str(nodes), GPUS_PER_NODE="1", DATA_DIR=str(tmp_path),
               OUT_DIR=str(tmp_path / "run"), **pytorchjob_env(job))  # fmt: skip
    env = {k: v for k, v in env.items() if not v.startswith("/fsx/")}  # caches on FSx
    env["PATH"] = f"{Path(_medasr()).parent}:{os.environ['PATH']}"
    args = [expand(a, env) for a in c["args"]] + list(extra)
    if argv_tail is not None:
        args = args[: args.index("medasr")] + argv_tail
    assert c["command"] == ["torchrun"]
    logs = [tmp_path / f"worker-{i}.log" for i in range(nodes)]
    procs = []
    try:
        for i, log in enumerate(logs):
            with log.open("w") as out:  # a file, not a pipe that nobody reads while waiting
                procs.append(subprocess.Popen(
                    [torchrun, *args], env={**os.environ, **env, "POD": f"worker-{i}"},
                    stdout=out, stderr=subprocess.STDOUT,
                ))  # fmt: skip
        for proc, log in zip(procs, logs, strict=True):
            code = proc.wait(timeout=240)
            assert code == 0, f"{log.name}:\n{log.read_text()[-4000:]}"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [log.read_text() for log in logs]


@pytest.mark.slow
def test_train_job_command_runs_under_torchrun(tmp_path: Path) -> None:
    """The PyTorchJob's exact torchrun + `medasr train` line on two 'nodes': torchrun takes
    every setting from the operator's PET_* variables, the two agents meet in the c10d
    rendezvous (PET_NNODES=2:2 starts no process before both are there) and `medasr train`
    gets --nodes 2 --gpus 1 (--print-config: the options and the config merge)."""
    for out in _train_workers(tmp_path, 2, extra=("--print-config",)):
        assert re.search(r"num_nodes: 2\b", out) and re.search(r"devices: 1\b", out), out


_FAIL_ONCE = """
import datetime, os, pathlib, sys
out = pathlib.Path(sys.argv[1])
with open(out / os.environ["POD"], "a") as f:
    print(os.environ["TORCHELASTIC_RESTART_COUNT"], file=f)
import torch.distributed as dist
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
dist.barrier()
if dist.get_rank() == 1 and not (out / "failed").exists():
    (out / "failed").touch()
    sys.exit(3)
dist.barrier()
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_train_job_restarts_every_node_after_a_failure(tmp_path: Path) -> None:
    """With the job's elastic settings and environment, one failed training process makes
    torchrun restart the processes of every node, once (each runs the same command again:
    `--resume` then continues from the last checkpoint). The training command is replaced
    by a script that fails once on rank 1. Without TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1,
    restarted processes often fail to connect and use up the job's maxRestarts."""
    script = tmp_path / "fail_once.py"
    script.write_text(_FAIL_ONCE, encoding="utf-8")
    tail = [sys.executable, str(script), str(tmp_path)]
    _train_workers(tmp_path, 2, argv_tail=tail)
    assert (tmp_path / "failed").exists()
    for node in ("worker-0", "worker-1"):
        starts = (tmp_path / node).read_text().split()
        assert len(starts) == 2, f"{node} started its training process {len(starts)} times"


@pytest.mark.slow
def test_data_jobs_run_end_to_end(tmp_path: Path) -> None:
    """The three data Jobs' exact shell scripts, two shards, in order: script shards, synth
    shards, manifest merge. Shards are disjoint and the manifests cover every utterance."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    run = tmp_path / "fsx/data/run"
    overrides = {
        "RUN_DIR": str(run), "SHARDS": "2",
        "LEXICON_ARGS": "--seed --exclude-common --limit 8",
        "SCRIPT_ARGS": "--backend template --per-term 1",
        "SYNTH_ARGS": "--per-script 1 --jobs 1 --engine espeak",
        "PATH": f"{Path(_medasr()).parent}:{os.environ['PATH']}",
    }  # fmt: skip

    def run_job(name: str, index: int | None) -> None:
        c = _job_container(name)
        assert c["command"] == ["/bin/sh", "-c"]
        work = tmp_path / f"work-{name}-{index}"  # the pod's emptyDir at /work
        work.mkdir()
        script = c["args"][0].replace("/work", str(work))
        env = {**os.environ, **configmap_env(c), **overrides, "HOME": str(work)}
        if index is not None:
            env["JOB_COMPLETION_INDEX"] = str(index)
        proc = subprocess.run(
            ["/bin/sh", "-c", script],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        assert proc.returncode == 0, f"{name}[{index}]: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"

    # synth refuses to start before every script shard exists
    c = _job_container("medasr-data-synth")
    early = subprocess.run(["/bin/sh", "-c", c["args"][0]], capture_output=True, text=True, check=False,
                           env={**os.environ, **configmap_env(c), **overrides, "JOB_COMPLETION_INDEX": "0"})  # fmt: skip
    assert early.returncode == 2 and "run medasr-data-script first" in early.stderr

    for i in (0, 1):
        run_job("medasr-data-script", i)
    scripts = [
        json.loads(line)["id"]
        for i in (1, 2)
        for line in (run / f"scripts/part-{i}-of-2.jsonl").read_text().splitlines()
    ]
    assert scripts and len(scripts) == len(set(scripts))
    for i in (0, 1):
        run_job("medasr-data-synth", i)
    shard_records = [
        [json.loads(line) for line in (run / f"synth/utterances.shard-{k}-of-2.jsonl").open()]
        for k in (1, 2)
    ]
    shard_ids = [{r["id"] for r in records} for records in shard_records]
    assert not shard_ids[0] & shard_ids[1]
    # every script is spoken (a dictation over synth's 20 s default is split into parts)
    assert {r["script_id"] for records in shard_records for r in records} == set(scripts)
    utterances = len(shard_ids[0] | shard_ids[1])
    run_job("medasr-data-manifest", None)
    lines = [
        json.loads(line)
        for f in sorted((run / "manifests").glob("*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    assert {"train.jsonl", "val.jsonl", "test.jsonl"} <= {
        p.name for p in (run / "manifests").iterdir()
    }
    assert len(lines) == utterances
    assert all(Path(x["audio_filepath"]).is_file() and x["duration"] > 0 for x in lines)
