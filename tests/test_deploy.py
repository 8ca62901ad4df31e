"""deploy/ checked without a container runtime or a Kubernetes cluster.

* Every YAML file parses; the Kubernetes manifests pass the API schemas of KUBERNETES_VERSION
  in strict mode (kubernetes-validate bundles them: no network) and are wired together
  (selectors, ports, peer list, probes, volume); kustomization.yaml lists every manifest.
* compose.yaml, the systemd unit with its env example, and the Dockerfile say what
  deploy/README.md says they do; `docker compose config` and `systemd-analyze verify` run
  where those tools are installed.
* The real chronik-server accepts the settings each setup gives it (k8s, compose, systemd),
  run in a network namespace of its own: the made-up peer names and addresses stay there.
* The compose health check and the Kubernetes probe paths answer as expected on real nodes.
* The Grafana dashboard's queries parse as PromQL and use only metrics and labels that a
  running 3-node cluster exports, or that are PENDING (not exported yet).

Every check is a function returning its problems, and each one is also run on a broken copy
(the test_*_catches_* tests) so that a check that cannot fail is noticed.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import kubernetes_validate
import promql_parser
import pytest
import yaml
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic

from conftest import ANSI_ESCAPE_RE, REPO_ROOT, SERVER_BIN, Cluster, ClusterNode, _die_with_parent, free_port
from helpers import admin, consume_range, consumer, http_get, producer, unique_topic, wait_until
from tls_certs import make_ca, make_cert
from rpc_certs import make_pki

pytestmark = pytest.mark.chronik_only("deploy/ manifests and chronik-server settings")

DEPLOY = REPO_ROOT / "deploy"
K8S_DIR = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "docker" / "compose.yaml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DOCKERIGNORE = DEPLOY / "docker" / "Dockerfile.dockerignore"
UNIT = DEPLOY / "systemd" / "chronik.service"
ENV_EXAMPLE = DEPLOY / "systemd" / "chronik.env.example"
DASHBOARD = DEPLOY / "grafana" / "chronik-dashboard.json"

KUBERNETES_VERSION = "1.30"
DATA_DIR = "/var/lib/chronik"
UID = 10001

# Metrics the dashboard queries that the broker does not export yet, with their labels.
# Empty this as the broker starts exporting them: test_dashboard_metrics_are_exported fails
# for a name listed here that the live_cluster exports (it has a topic with followers and a
# group with a committed offset, so these have series once they exist).
PENDING: dict[str, set[str]] = {}
# Labels Prometheus adds to every scraped series.
SCRAPE_LABELS = {"instance", "job"}

FORMED = "formed the metadata cluster from the peer list"


# ---------------------------------------------------------------------- shared helpers
def load_yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def parse_peers(value: str) -> dict[int, str]:
    """CHRONIK_CLUSTER -> {id: HOST:PORT}; raises on a malformed entry."""
    peers = {}
    for item in value.split(","):
        node_id, _, addr = item.strip().partition("@")
        host, _, port = addr.rpartition(":")
        assert node_id.isdigit() and host and port.isdigit(), f"peer {item!r} is not ID@HOST:PORT"
        assert int(node_id) not in peers, f"node id {node_id} twice in {value!r}"
        peers[int(node_id)] = addr
    return peers


def port_of(addr: str) -> int:
    return int(addr.rpartition(":")[2])


@functools.cache
def server_env_names() -> frozenset[str]:
    """Every environment variable chronik-server reads: `[env: NAME=]` in --help, and the log filter."""
    out = subprocess.run([str(SERVER_BIN), "--help"], capture_output=True, text=True, timeout=30, check=True).stdout
    names = set(re.findall(r"\[env: (CHRONIK_[A-Z0-9_]+)=", out))
    assert len(names) > 20, out
    return frozenset(names | {"CHRONIK_LOG"})


def unknown_settings(env: dict[str, str], where: str) -> list[str]:
    return [f"{where}: {k} is not a chronik-server setting" for k in sorted(env)
            if k.startswith("CHRONIK_") and k not in server_env_names()]


# ---------------------------------------------------------------------- YAML
def test_every_yaml_file_parses():
    files = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))
    assert len(files) >= 6, files
    for f in files:
        docs = load_yaml_docs(f)
        assert docs, f"{f}: no document"
        assert all(isinstance(d, dict) for d in docs), f"{f}: a document is not a mapping"


# ---------------------------------------------------------------------- Kubernetes
def k8s_docs(directory: Path = K8S_DIR) -> list[dict]:
    return [d for f in sorted(directory.glob("*.yaml")) if f.name != "kustomization.yaml"
            for d in load_yaml_docs(f)]


def schema_problems(doc: dict) -> list[str]:
    what = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{what}: {'.'.join(map(str, e.path))}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"{what}: {e.message}"]
    return []


def kustomization_problems(directory: Path) -> list[str]:
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    listed = k.get("resources") or []
    files = {p.name for p in directory.iterdir() if p.suffix in (".yaml", ".yml")} - {"kustomization.yaml"}
    problems = [f"{r} is listed but is not a file here" for r in listed if not (directory / r).is_file()]
    problems += [f"{r} is listed twice" for r in set(listed) if listed.count(r) > 1]
    problems += [f"{f} is not in kustomization.yaml's resources" for f in sorted(files - set(listed))]
    return problems


def k8s_expand(value: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion: defined names are replaced, `$$` is `$`, anything else
    (such as the shell's `$(( ... ))`) stays as written."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("$(", i) and (end := value.find(")", i)) != -1 and value[i + 2:end] in env:
            out.append(env[value[i + 2:end]])
            i = end + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


# The Secrets the StatefulSet reads, as an operator creates them (deploy/README.md).
TEST_SECRETS = {("chronik-bootstrap-user", "user"): "admin:test-password"}


def pod_env(container: dict, pod: str, namespace: str) -> dict[str, str]:
    """The container's env list as the kubelet resolves it for one pod (in order; a value may
    refer to the ones before it; secret keys from TEST_SECRETS)."""
    fields = {"metadata.name": pod, "metadata.namespace": namespace}
    env: dict[str, str] = {}
    for e in container.get("env", []):
        if "secretKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = TEST_SECRETS[(ref["name"], ref["key"])]
        elif "valueFrom" in e:
            env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[e["name"]] = k8s_expand(str(e.get("value", "")), env)
    return env


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def network_policy_problems(np: dict, labels: dict) -> list[str]:
    """The RPC port (unauthenticated here: CHRONIK_RPC_INSECURE) is reachable from the Chronik
    pods only; Kafka and HTTP from anywhere."""
    spec = np["spec"]
    if any(labels.get(k) != v for k, v in spec.get("podSelector", {}).get("matchLabels", {}).items()) \
            or not spec.get("podSelector", {}).get("matchLabels"):
        return [f"NetworkPolicy podSelector {spec.get('podSelector')} does not select the pods {labels}"]
    if "Ingress" not in spec.get("policyTypes", []):
        return ["the NetworkPolicy does not restrict ingress"]
    p = []
    for rule in spec.get("ingress", []):
        ports = {x.get("port") for x in rule.get("ports", [])}
        peers = rule.get("from")
        if "rpc" in ports or 9093 in ports or not ports:
            own = [f.get("podSelector", {}).get("matchLabels") for f in peers or []]
            if not peers or any(m is None or any(labels.get(k) != v for k, v in m.items()) for m in own):
                p.append(f"NetworkPolicy rule {rule} opens the RPC port beyond the Chronik pods")
    return p


def k8s_problems(docs: list[dict]) -> list[str]:
    """How the manifests fit together, and with the server's flags."""
    p: list[str] = []
    sts = one(docs, "StatefulSet")
    spec, name = sts["spec"], sts["metadata"]["name"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"].get("labels", {})
    headless = one(docs, "Service", spec.get("serviceName"))
    if headless["spec"].get("clusterIP") != "None":
        p.append("the StatefulSet's service is not headless (clusterIP: None)")
    if headless["spec"].get("publishNotReadyAddresses") is not True:
        p.append("the headless service must publish not-ready addresses: peers find each other before they are ready")
    if spec.get("replicas") != 3:
        p.append(f"replicas is {spec.get('replicas')}, the voter list names 3")
    if spec.get("podManagementPolicy") != "Parallel":
        p.append("podManagementPolicy must be Parallel: a node is ready only once a majority runs")
    if pod.get("terminationGracePeriodSeconds", 30) < 30:
        p.append("terminationGracePeriodSeconds below 30 cuts the graceful shutdown short")
    if pod.get("enableServiceLinks") is not False:
        p.append("enableServiceLinks must be false: service env vars land in the CHRONIK_* namespace")
    for d in docs:
        sel = d["spec"].get("selector") or {}
        sel = sel.get("matchLabels", sel) if d["kind"] != "Service" else sel
        if d["kind"] in ("Service", "StatefulSet", "PodDisruptionBudget") and (
                not sel or any(labels.get(k) != v for k, v in sel.items())):
            p.append(f"{d['kind']}/{d['metadata']['name']}: selector {sel} does not select the pods {labels}")
    pdb = one(docs, "PodDisruptionBudget")
    if pdb["spec"].get("maxUnavailable") != 1:
        p.append("the PodDisruptionBudget must allow one pod down at most")
    p += network_policy_problems(one(docs, "NetworkPolicy"), labels)

    sec = pod.get("securityContext", {})
    if not (sec.get("runAsNonRoot") is True and sec.get("runAsUser") == UID and sec.get("fsGroup") == UID):
        p.append(f"pod securityContext must run as non-root uid {UID} with fsGroup {UID}: {sec}")
    (c,) = pod["containers"]
    ports = {x["name"]: x["containerPort"] for x in c.get("ports", [])}
    if set(ports) != {"kafka", "rpc", "http"}:
        p.append(f"container ports {ports}, expected kafka, rpc, http")
        return p
    for svc in (d for d in docs if d["kind"] == "Service"):
        for sp in svc["spec"]["ports"]:
            if sp.get("targetPort", sp["port"]) not in set(ports) | set(ports.values()):
                p.append(f"Service/{svc['metadata']['name']}: targetPort {sp.get('targetPort')} is no container port")

    command = c.get("command", []) + c.get("args", [])
    if command[:2] != ["sh", "-c"] or "exec chronik-server" not in command[-1]:
        p.append(f"command {command}: expected sh -c '... exec chronik-server' (exec: SIGTERM reaches the server)")
    env = pod_env(c, f"{name}-1", "ns")
    missing = {"CHRONIK_CLUSTER", "CHRONIK_RPC_ADDR", "CHRONIK_ADVERTISED_LISTENERS", "CHRONIK_LISTENERS",
               "CHRONIK_DATA_DIR"} - set(env)
    if missing:
        return p + [f"env lacks {sorted(missing)}"]
    p += unknown_settings(env, "statefulset env")
    dns = f"{spec['serviceName']}.ns.svc.cluster.local"
    peers = parse_peers(env["CHRONIK_CLUSTER"])
    want = {i + 1: f"{name}-{i}.{dns}:{ports['rpc']}" for i in range(spec.get("replicas") or 0)}
    if peers != want:
        p.append(f"CHRONIK_CLUSTER is {peers}, expected the pods' DNS names {want}")
    if env["CHRONIK_RPC_ADDR"] != f"0.0.0.0:{ports['rpc']}":
        p.append(f"CHRONIK_RPC_ADDR {env['CHRONIK_RPC_ADDR']}: the own peer entry is a DNS name, bind 0.0.0.0:rpc")
    advertised = env["CHRONIK_ADVERTISED_LISTENERS"].split("://", 1)[-1]
    if advertised != f"{name}-1.{dns}:{ports['kafka']}":
        p.append(f"CHRONIK_ADVERTISED_LISTENERS {advertised} is not the pod's DNS name and Kafka port")
    bound = {"CHRONIK_LISTENERS": env["CHRONIK_LISTENERS"].split("://", 1)[-1], "CHRONIK_HTTP_ADDR": env.get("CHRONIK_HTTP_ADDR")}
    for (key, value), port in zip(bound.items(), ("kafka", "http")):
        if value is not None and port_of(value) != ports[port]:
            p.append(f"{key} {value} does not bind the {port} container port {ports[port]}")

    probes = {"readinessProbe": "/health/ready", "livenessProbe": "/health/live"}
    for probe, path in probes.items():
        get = (c.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or get.get("port") not in ("http", ports["http"]):
            p.append(f"{probe} must GET {path} on the http port: {get}")
    res = c.get("resources", {})
    if not (res.get("requests") and res.get("limits")):
        p.append("container resources need requests and limits")
    csec = c.get("securityContext", {})
    if csec.get("allowPrivilegeEscalation") is not False:
        p.append("container securityContext must set allowPrivilegeEscalation: false")
    claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    if mounts.get(env["CHRONIK_DATA_DIR"]) not in claims:
        p.append(f"CHRONIK_DATA_DIR {env['CHRONIK_DATA_DIR']} is not a volumeClaimTemplate mount {mounts}")
    return p


def test_kubernetes_manifests_pass_the_api_schema():
    docs = k8s_docs()
    assert sorted(d["kind"] for d in docs) == ["NetworkPolicy", "PodDisruptionBudget", "Service", "Service",
                                               "StatefulSet"]
    assert [p for d in docs for p in schema_problems(d)] == []


def test_kubernetes_manifests_fit_together():
    assert k8s_problems(k8s_docs()) == []


def test_kustomization_lists_every_manifest():
    assert kustomization_problems(K8S_DIR) == []


def test_kustomize_builds_valid_manifests():
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed: `kubectl kustomize` not run (the files are checked one by one)")
    out = subprocess.run([kubectl, "kustomize", str(K8S_DIR)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert len(docs) == len(k8s_docs())
    assert [p for d in docs for p in schema_problems(d)] == []
    assert k8s_problems(docs) == []


def _sts(docs):
    return one(docs, "StatefulSet")


def _container(docs):
    return _sts(docs)["spec"]["template"]["spec"]["containers"][0]


def _env_set(docs, name, value):
    for e in _container(docs)["env"]:
        if e["name"] == name:
            e["value"] = value


def _del_selector(docs):
    del _sts(docs)["spec"]["selector"]


SCHEMA_BREAKS = {
    "replicas-not-a-number": lambda d: _sts(d)["spec"].update(replicas="three"),
    "unknown-field": lambda d: _container(d).update(readinessProb={}),
    "no-selector": _del_selector,
    "port-not-a-number": lambda d: _container(d)["ports"][0].update(containerPort="kafka"),
}


@pytest.mark.parametrize("breakage", SCHEMA_BREAKS.values(), ids=SCHEMA_BREAKS.keys())
def test_schema_check_catches_a_broken_statefulset(breakage):
    docs = copy.deepcopy(k8s_docs())
    breakage(docs)
    assert schema_problems(_sts(docs))


WIRING_BREAKS = {
    "headless-not-headless": lambda d: one(d, "Service", "chronik-headless")["spec"].pop("clusterIP"),
    "ordered-ready": lambda d: _sts(d)["spec"].update(podManagementPolicy="OrderedReady"),
    "peer-list-short": lambda d: _env_set(d, "CHRONIK_CLUSTER", "1@chronik-0.chronik-headless.$(POD_NAMESPACE)"
                                                               ".svc.cluster.local:9093"),
    "rpc-on-loopback": lambda d: _env_set(d, "CHRONIK_RPC_ADDR", "127.0.0.1:9093"),
    "ready-probe-path": lambda d: _container(d)["readinessProbe"]["httpGet"].update(path="/health/live"),
    "data-dir-not-on-volume": lambda d: _env_set(d, "CHRONIK_DATA_DIR", "/data"),
    "pdb-selects-nothing": lambda d: one(d, "PodDisruptionBudget")["spec"].update(
        selector={"matchLabels": {"app": "other"}}),
    "unknown-setting": lambda d: _container(d)["env"].append({"name": "CHRONIK_DATADIR", "value": "/x"}),
    "rpc-open-to-all": lambda d: one(d, "NetworkPolicy")["spec"]["ingress"][0].pop("from"),
    "netpol-selects-nothing": lambda d: one(d, "NetworkPolicy")["spec"].update(
        podSelector={"matchLabels": {"app": "other"}}),
}


@pytest.mark.parametrize("breakage", WIRING_BREAKS.values(), ids=WIRING_BREAKS.keys())
def test_wiring_check_catches_a_broken_manifest(breakage):
    docs = copy.deepcopy(k8s_docs())
    breakage(docs)
    assert k8s_problems(docs)


def test_kustomization_check_catches_an_unlisted_or_missing_file(tmp_path):
    d = tmp_path / "k"
    shutil.copytree(K8S_DIR, d)
    (d / "extra.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert any("extra.yaml" in p for p in kustomization_problems(d))
    (d / "extra.yaml").unlink()
    (d / "pdb.yaml").unlink()
    assert any("pdb.yaml" in p for p in kustomization_problems(d))


# ---------------------------------------------------------------------- Dockerfile
def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        s = line.strip()
        if not pending and (not s or s.startswith("#")):
            continue
        if pending and s.startswith("#"):
            continue
        if s.endswith("\\"):
            pending += s[:-1] + " "
            continue
        s, pending = pending + s, ""
        word, _, rest = s.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def final_stage(text: str) -> list[tuple[str, str]]:
    ins = dockerfile_instructions(text)
    last = max(i for i, (k, _) in enumerate(ins) if k == "FROM")
    return ins[last:]


def image_env(text: str) -> dict[str, str]:
    env = {}
    for k, v in final_stage(text):
        if k == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(v)))
    return env


def image_entrypoint(text: str) -> list[str]:
    return [json.loads(v) for k, v in final_stage(text) if k == "ENTRYPOINT"][-1]


def dockerfile_problems(text: str) -> list[str]:
    p = []
    ins = dockerfile_instructions(text)
    froms = [v.split()[0] for k, v in ins if k == "FROM"]
    if len(froms) < 2:
        return [f"{len(froms)} FROM stage(s), expected a builder and a runtime stage"]
    if not froms[0].startswith("rust:"):
        p.append(f"the builder stage is {froms[0]}, expected a rust image")
    if froms[-1].startswith("rust"):
        p.append(f"the runtime stage is {froms[-1]}: the Rust toolchain does not belong in the image")
    builds = [v for k, v in ins if k == "RUN" and "cargo build" in v]
    if not builds:
        p.append("no RUN cargo build")
    for v in builds:
        for flag in ("--release", "--locked", "--bin chronik-server", "--bin chronik-admin"):
            if flag not in v:
                p.append(f"cargo build lacks {flag}")
    stage = final_stage(text)
    users = [v for k, v in stage if k == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        p.append(f"the runtime stage must end as a non-root USER, has {users}")
    elif users[-1].split(":")[0] != str(UID):
        p.append(f"USER {users[-1]}: expected uid {UID}, the one the Kubernetes securityContext uses")
    exposed = {int(x.split("/")[0]) for k, v in stage if k == "EXPOSE" for x in v.split()}
    if not {9092, 9093, 9644} <= exposed:
        p.append(f"EXPOSE {sorted(exposed)}, expected 9092 9093 9644")
    env = image_env(text)
    want = {"CHRONIK_DATA_DIR": DATA_DIR, "CHRONIK_LISTENERS": "PLAINTEXT://0.0.0.0:9092",
            "CHRONIK_HTTP_ADDR": "0.0.0.0:9644"}
    p += [f"ENV {k}={env.get(k)}, expected {v}" for k, v in want.items() if env.get(k) != v]
    p += unknown_settings(env, "Dockerfile ENV")
    volumes = " ".join(v for k, v in stage if k == "VOLUME")
    if DATA_DIR not in volumes:
        p.append(f"no VOLUME {DATA_DIR}")
    copies = " ".join(v for k, v in stage if k == "COPY" and v.startswith("--from="))
    for b in ("chronik-server", "chronik-admin"):
        if b not in copies:
            p.append(f"{b} is not copied from the builder")
    try:
        if image_entrypoint(text) != ["chronik-server"]:
            p.append(f"ENTRYPOINT {image_entrypoint(text)}, expected exec form [\"chronik-server\"]: "
                     "the server is PID 1 and gets SIGTERM")
    except (IndexError, json.JSONDecodeError):
        p.append("no exec-form ENTRYPOINT")
    return p


def dockerignore_problems(text: str) -> list[str]:
    patterns = [s.strip().lstrip("/") for s in text.splitlines() if s.strip() and not s.startswith("#")]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path, pat.removeprefix("**/")) for pat in patterns)

    p = [f"{x} is not excluded from the build context" for x in ("target", ".venv", "data", ".git")
         if not ignored(x)]
    p += [f"{x} is excluded but the build needs it" for x in
          ("Cargo.toml", "Cargo.lock", "crates", "proto", "vendor", "vendor/kafka-protocol") if ignored(x)]
    return p


def test_dockerfile_builds_a_small_non_root_image():
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


def test_dockerignore_keeps_build_output_out_and_sources_in():
    assert dockerignore_problems(DOCKERIGNORE.read_text()) == []


DOCKERFILE_BREAKS = {
    "single-stage": lambda t: re.sub(r"FROM debian:\S+", "", t),
    "runtime-is-rust": lambda t: t.replace("FROM debian:bookworm-slim", "FROM rust:1-bookworm"),
    "unlocked": lambda t: t.replace("--locked ", ""),
    "root": lambda t: t.replace("USER 10001:10001", "USER root"),
    "no-rpc-port": lambda t: t.replace("EXPOSE 9092 9093 9644", "EXPOSE 9092 9644"),
    "loopback-kafka": lambda t: t.replace("CHRONIK_LISTENERS=PLAINTEXT://0.0.0.0:9092",
                                          "CHRONIK_LISTENERS=PLAINTEXT://127.0.0.1:9092"),
    "shell-entrypoint": lambda t: t.replace('ENTRYPOINT ["chronik-server"]', "ENTRYPOINT chronik-server"),
}


@pytest.mark.parametrize("breakage", DOCKERFILE_BREAKS.values(), ids=DOCKERFILE_BREAKS.keys())
def test_dockerfile_check_catches_a_broken_dockerfile(breakage):
    original = DOCKERFILE.read_text()
    broken = breakage(original)
    assert broken != original, "the breakage no longer applies: update it"
    assert dockerfile_problems(broken)


def test_dockerignore_check_catches_a_missing_or_harmful_pattern():
    text = DOCKERIGNORE.read_text()
    assert dockerignore_problems(re.sub(r"(?m)^target$", "", text))
    assert dockerignore_problems(text + "vendor\n")


# ---------------------------------------------------------------------- compose
def compose_services(doc: dict) -> dict[str, dict]:
    return doc.get("services") or {}


def compose_env(service: dict) -> dict[str, str]:
    """The service's environment, with compose's `${VAR:-default}` taken at its default (the
    variables are unset here)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v)) for k, v in env.items()}


def compose_problems(doc: dict, compose_dir: Path = COMPOSE.parent) -> list[str]:
    p: list[str] = []
    services = compose_services(doc)
    if len(services) != 3:
        return [f"{len(services)} services, expected 3 nodes"]
    volumes = doc.get("volumes") or {}
    clusters, node_ids, data_volumes, host_ports = set(), {}, [], []
    for name, s in services.items():
        build = s.get("build") or {}
        context = (compose_dir / build.get("context", ".")).resolve()
        if context != REPO_ROOT or not (context / build.get("dockerfile", "Dockerfile")).is_file():
            p.append(f"{name}: build {build} is not the repository with deploy/docker/Dockerfile")
        test = (s.get("healthcheck") or {}).get("test") or []
        if "/health/ready" not in " ".join(test):
            p.append(f"{name}: no healthcheck on /health/ready")
        mounts = [v for v in s.get("volumes") or [] if isinstance(v, str) and v.endswith(":" + DATA_DIR)]
        if len(mounts) != 1 or mounts[0].split(":")[0] not in volumes:
            p.append(f"{name}: no named volume at {DATA_DIR}")
        else:
            data_volumes.append(mounts[0].split(":")[0])
        env = compose_env(s)
        p += unknown_settings(env, name)
        if "CHRONIK_CLUSTER" not in env or "CHRONIK_NODE_ID" not in env:
            p.append(f"{name}: CHRONIK_CLUSTER and CHRONIK_NODE_ID are required")
            continue
        clusters.add(env["CHRONIK_CLUSTER"])
        node_ids[name] = int(env["CHRONIK_NODE_ID"])
        peers = parse_peers(env["CHRONIK_CLUSTER"])
        own = peers.get(node_ids[name], "")
        if own.rpartition(":")[0] not in (name, s.get("hostname")):
            p.append(f"{name}: its node id {node_ids[name]} is {own or 'not'} in CHRONIK_CLUSTER, not this service")
        elif env.get("CHRONIK_RPC_ADDR") != f"0.0.0.0:{port_of(own)}":
            p.append(f"{name}: CHRONIK_RPC_ADDR {env.get('CHRONIK_RPC_ADDR')}: its peer entry is a host name, "
                     f"so bind 0.0.0.0:{port_of(own)}")
        ports = {}
        for m in s.get("ports") or []:
            host, _, container = str(m).rpartition(":")
            ports[int(container)] = int(host.rpartition(":")[2])
            host_ports.append(int(host.rpartition(":")[2]))
        adv = env.get("CHRONIK_ADVERTISED_ADDR", "")
        if 9092 not in ports or adv != f"localhost:{ports[9092]}":
            p.append(f"{name}: advertises {adv!r} but publishes Kafka on {ports.get(9092)}")
        if 9644 not in ports:
            p.append(f"{name}: HTTP (9644) is not published")
    if len(clusters) != 1:
        p.append(f"CHRONIK_CLUSTER differs between nodes: {clusters}")
    else:
        hosts = {addr.rpartition(":")[0] for addr in parse_peers(clusters.pop()).values()}
        if hosts != set(services) and hosts != {s.get("hostname") for s in services.values()}:
            p.append(f"CHRONIK_CLUSTER names {hosts}, the services are {set(services)}")
    if len(set(node_ids.values())) != len(node_ids):
        p.append(f"node ids are not distinct: {node_ids}")
    if len(set(data_volumes)) != len(data_volumes):
        p.append(f"nodes share a data volume: {data_volumes}")
    if len(set(host_ports)) != len(host_ports):
        p.append(f"a host port is published twice: {sorted(host_ports)}")
    return p


def compose_healthcheck(doc: dict) -> list[str]:
    test = next(iter(compose_services(doc).values()))["healthcheck"]["test"]
    assert test[0] == "CMD", test
    return test[1:]


def test_compose_describes_a_three_node_cluster():
    assert compose_problems(yaml.safe_load(COMPOSE.read_text())) == []


def test_docker_compose_config():
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode:
        pytest.skip("docker with the compose plugin is not installed: `docker compose config` not run "
                    "(compose.yaml is checked structurally)")
    out = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr


def _svc(doc, n):
    return compose_services(doc)[f"chronik-{n}"]


COMPOSE_BREAKS = {
    "two-nodes": lambda d: compose_services(d).pop("chronik-3"),
    "no-healthcheck": lambda d: _svc(d, 2).pop("healthcheck"),
    "shared-volume": lambda d: _svc(d, 2).update(volumes=[f"chronik-1-data:{DATA_DIR}"]),
    "same-node-id": lambda d: _svc(d, 3)["environment"].update(CHRONIK_NODE_ID="2"),
    "other-peer-list": lambda d: _svc(d, 1)["environment"].update(
        CHRONIK_CLUSTER="1@chronik-1:9093,2@chronik-2:9093,3@chronik-4:9093"),
    "rpc-on-loopback": lambda d: _svc(d, 1)["environment"].update(CHRONIK_RPC_ADDR="127.0.0.1:9093"),
    "advertised-port-not-published": lambda d: _svc(d, 1)["environment"].update(
        CHRONIK_ADVERTISED_ADDR="localhost:9092"),
    "unknown-setting": lambda d: _svc(d, 1)["environment"].update(CHRONIK_NODEID="1"),
}


@pytest.mark.parametrize("breakage", COMPOSE_BREAKS.values(), ids=COMPOSE_BREAKS.keys())
def test_compose_check_catches_a_broken_compose_file(breakage):
    doc = yaml.safe_load(COMPOSE.read_text())  # merge keys resolved: each service has its own dicts
    for s in compose_services(doc).values():
        s["environment"] = dict(s["environment"])
    breakage(doc)
    assert compose_problems(doc)


# ---------------------------------------------------------------------- systemd
def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("[") and s.endswith("]"):
            current = sections.setdefault(s[1:-1], {})
            continue
        key, _, value = s.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


UNIT_EXACT = {
    "Type": "simple", "User": "chronik", "Restart": "on-failure", "KillSignal": "SIGTERM",
    "EnvironmentFile": "-/etc/chronik/chronik.env", "StateDirectory": "chronik",
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
    "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes", "RestrictNamespaces": "yes", "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native", "CapabilityBoundingSet": "",
}


def unit_problems(text: str) -> list[str]:
    u = parse_unit(text)
    svc = u.get("Service", {})
    last = {k: v[-1] for k, v in svc.items()}
    p = [f"{k}={last.get(k)}, expected {k}={v}" for k, v in UNIT_EXACT.items() if last.get(k) != v]
    for k in ("RestartSec", "TimeoutStopSec"):
        if k not in last:
            p.append(f"no {k}")
    if not last.get("LimitNOFILE", "").isdigit() or int(last["LimitNOFILE"]) < 65536:
        p.append(f"LimitNOFILE={last.get('LimitNOFILE')}: one descriptor per connection and segment needs more")
    if not last.get("ExecStart", "").startswith("/usr/local/bin/chronik-server"):
        p.append(f"ExecStart={last.get('ExecStart')}")
    families = set(" ".join(svc.get("RestrictAddressFamilies", [])).split())
    if families != {"AF_INET", "AF_INET6", "AF_UNIX"}:
        p.append(f"RestrictAddressFamilies={families}")
    if DATA_DIR not in " ".join(svc.get("ReadWritePaths", [])).split():
        p.append(f"{DATA_DIR} is not in ReadWritePaths")
    env = dict(e.split("=", 1) for v in svc.get("Environment", []) for e in shlex.split(v))
    if env.get("CHRONIK_DATA_DIR") != DATA_DIR:
        p.append(f"Environment CHRONIK_DATA_DIR={env.get('CHRONIK_DATA_DIR')}, the StateDirectory is {DATA_DIR}")
    if "multi-user.target" not in u.get("Install", {}).get("WantedBy", []):
        p.append("not WantedBy=multi-user.target")
    return p


def env_file(text: str, commented: bool = False) -> dict[str, str]:
    """KEY=VALUE lines; with `commented`, also the `#KEY=VALUE` examples."""
    out = {}
    for line in text.splitlines():
        s = line.strip()
        if commented:
            s = s.lstrip("#").strip()
        m = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", s)
        if m:
            out[m[1]] = m[2]
    return out


def env_example_problems(text: str) -> list[str]:
    p = unknown_settings(env_file(text, commented=True), "chronik.env.example")
    active = env_file(text)
    for k in ("CHRONIK_NODE_ID", "CHRONIK_CLUSTER"):
        if k not in active:
            p.append(f"{k} is not set: the unit runs a cluster node")
    p += [f"{k} is empty: an empty value is not the default" for k, v in active.items() if not v]
    return p


def systemd_verify_problems(unit_text: str, tmp_path: Path) -> list[str]:
    """`systemd-analyze verify` on a copy whose ExecStart is the real binary (the installed
    path does not exist here). It exits 0 on most problems, so its output counts too. It does
    not look up User=, so an unknown user is no problem here."""
    text = re.sub(r"(?m)^ExecStart=/usr/local/bin/chronik-server", f"ExecStart={SERVER_BIN}", unit_text)
    path = tmp_path / "chronik.service"
    path.write_text(text)
    out = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True,
                         timeout=60)
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if "chronik.service" in ln]
    if out.returncode != 0 and not lines:
        lines = [f"exit {out.returncode}: {out.stderr.strip()}"]
    return lines


def needs_systemd_analyze():
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed: the unit is checked structurally only")


def test_systemd_unit_is_hardened_and_restarts_on_failure():
    assert unit_problems(UNIT.read_text()) == []


def test_systemd_env_example_names_real_settings():
    assert env_example_problems(ENV_EXAMPLE.read_text()) == []


def test_systemd_analyze_verify(tmp_path):
    needs_systemd_analyze()
    assert systemd_verify_problems(UNIT.read_text(), tmp_path) == []


def test_systemd_analyze_security_exposure_is_low(tmp_path):
    """systemd's own exposure score (0 safest, 10 unprotected) of the unit, offline."""
    needs_systemd_analyze()
    path = tmp_path / "chronik.service"
    path.write_text(UNIT.read_text())
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20", "--no-pager",
                          str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"exposure above 2.0:\n{out.stdout[-3000:]}{out.stderr}"


UNIT_BREAKS = {
    "no-restart": lambda t: t.replace("Restart=on-failure", "Restart=no"),
    "no-limit-nofile": lambda t: re.sub(r"(?m)^LimitNOFILE=.*$", "", t),
    "new-privileges": lambda t: t.replace("NoNewPrivileges=yes", "NoNewPrivileges=no"),
    "capabilities": lambda t: t.replace("CapabilityBoundingSet=\n", "CapabilityBoundingSet=CAP_NET_ADMIN\n"),
    "sd-notify": lambda t: t.replace("Type=simple", "Type=notify"),
}


@pytest.mark.parametrize("breakage", UNIT_BREAKS.values(), ids=UNIT_BREAKS.keys())
def test_unit_check_catches_a_broken_unit(breakage):
    original = UNIT.read_text()
    broken = breakage(original)
    assert broken != original, "the breakage no longer applies: update it"
    assert unit_problems(broken)


@pytest.mark.parametrize("breakage", [
    lambda t: t + "\nBogusSetting=1\n",                                      # unknown key
    lambda t: t.replace("Restart=on-failure", "Restart=sometimes"),          # bad value
    lambda t: t.replace("ExecStart=/usr/local/bin/chronik-server", "ExecStart=/nonexistent/chronik-server"),
], ids=["unknown-key", "bad-value", "missing-binary"])
def test_systemd_verify_check_catches_a_broken_unit(breakage, tmp_path):
    needs_systemd_analyze()
    assert systemd_verify_problems(breakage(UNIT.read_text()), tmp_path)


def test_env_example_check_catches_unknown_or_empty_settings():
    text = ENV_EXAMPLE.read_text()
    assert env_example_problems(text + "#CHRONIK_DATADIR=/x\n")
    assert env_example_problems(text + "CHRONIK_RACK=\n")


# ---------------------------------------------------------------------- the real server takes the settings
@functools.cache
def netns_available() -> bool:
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    return subprocess.run(["unshare", "--net", "ip", "link", "set", "lo", "up"], capture_output=True,
                          timeout=30).returncode == 0


def start_until_formed(command: list[str], env: dict[str, str], workdir: Path,
                       local_ips: tuple[str, ...] = ()) -> dict:
    """Runs `command` in a new network namespace (loopback up, plus `local_ips` on it) until the
    server logs that it formed the metadata cluster (its settings were accepted), then kills
    it. Returns that log line's fields."""
    if not netns_available():
        pytest.skip("cannot create a network namespace (unshare --net, ip): the server run is skipped")
    script = "ip link set lo up" + "".join(f" && ip addr add {ip}/32 dev lo" for ip in local_ips) + ' && exec "$@"'
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONIK_")}
    full_env.update(env)
    full_env["PATH"] = f"{SERVER_BIN.parent}:{full_env.get('PATH', '/usr/bin:/bin')}"
    full_env["CHRONIK_LOG_FORMAT"] = "json"
    workdir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = workdir / "stdout", workdir / "stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(["unshare", "--net", "sh", "-c", script, "netns", *command], env=full_env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=workdir,
                                preexec_fn=_die_with_parent)
    try:
        deadline = time.monotonic() + 30
        while True:
            for line in err_path.read_text(errors="replace").splitlines():
                try:
                    rec = json.loads(ANSI_ESCAPE_RE.sub("", line))
                except ValueError:
                    continue
                if rec.get("fields", {}).get("message") == FORMED:
                    return rec["fields"]
            if proc.poll() is not None:
                pytest.fail(f"{command} exited with {proc.returncode} before forming the cluster:\n"
                            f"{err_path.read_text(errors='replace')[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{command}: no {FORMED!r} within 30 s:\n{err_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def test_statefulset_pod_starts_as_the_node_its_ordinal_names(tmp_path):
    """Pod chronik-2's command and env as the kubelet resolves them (plus the image's ENV):
    node id 3, the three pods' DNS names as peers. The data dir moves to tmp_path."""
    sts = _sts(k8s_docs())
    c = sts["spec"]["template"]["spec"]["containers"][0]
    pod = f"{sts['metadata']['name']}-2"
    env = {**image_env(DOCKERFILE.read_text()), **pod_env(c, pod, "test-ns")}
    command = [k8s_expand(x, env) for x in c["command"] + c.get("args", [])]
    env["CHRONIK_DATA_DIR"] = str(tmp_path / "data")
    # The mounted Secret chronik-kafka-tls, issued here: the Kafka port is SASL_SSL.
    assert env["CHRONIK_LISTENERS"].startswith("SASL_SSL://") and env["CHRONIK_AUTHORIZER"] == "acl"
    pki = tmp_path / "kafka-pki"
    pki.mkdir()
    make_ca(pki, "ca")
    make_cert(pki, "ca", "kafka", "chronik-2", server=True)
    env.update(CHRONIK_TLS_CERT=str(pki / "kafka.pem"), CHRONIK_TLS_KEY=str(pki / "kafka.key"))
    fields = start_until_formed(command, env, tmp_path)
    assert fields["node"] == 3
    assert parse_peers(fields["peers"]) == parse_peers(env["CHRONIK_CLUSTER"])


def test_compose_node_starts_with_its_settings(tmp_path):
    doc = yaml.safe_load(COMPOSE.read_text())
    service = compose_services(doc)["chronik-2"]
    text = DOCKERFILE.read_text()
    env = {**image_env(text), **compose_env(service), "CHRONIK_DATA_DIR": str(tmp_path / "data")}
    # The Kafka port is SASL_SSL with the certificate make-certs.sh makes, mounted as secrets:
    # the same made here.
    assert env["CHRONIK_LISTENERS"].startswith("SASL_SSL://") and env["CHRONIK_AUTHORIZER"] == "acl"
    assert env["CHRONIK_TLS_CERT"] == "/run/secrets/kafka_cert", "the secret compose mounts"
    certs = tmp_path / "certs"
    subprocess.run([str(COMPOSE.parent / "make-certs.sh"), str(certs)], check=True, capture_output=True,
                   timeout=120)
    env.update(CHRONIK_TLS_CERT=str(certs / "kafka.pem"), CHRONIK_TLS_KEY=str(certs / "kafka.key"))
    fields = start_until_formed(image_entrypoint(text) + list(service.get("command") or []), env, tmp_path)
    assert fields["node"] == int(env["CHRONIK_NODE_ID"])
    assert parse_peers(fields["peers"]) == parse_peers(env["CHRONIK_CLUSTER"])


def test_systemd_node_starts_with_the_example_settings(tmp_path):
    """The unit's Environment= overridden by the example env file (as EnvironmentFile= does),
    with the example's own IP on the namespace's loopback so its addresses bind."""
    svc = parse_unit(UNIT.read_text())["Service"]
    env = dict(e.split("=", 1) for v in svc.get("Environment", []) for e in shlex.split(v))
    env.update(env_file(ENV_EXAMPLE.read_text()))
    own = parse_peers(env["CHRONIK_CLUSTER"])[int(env["CHRONIK_NODE_ID"])]
    listeners = [e.split("://", 1)[1] for e in env.get("CHRONIK_LISTENERS", "").split(",") if "://" in e]
    ips = {a.rpartition(":")[0] for a in (own, env.get("CHRONIK_KAFKA_ADDR", ""), *listeners)}
    ips = tuple(sorted(ip for ip in ips if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", ip) and ip != "0.0.0.0"
                       and not ip.startswith("127.")))
    command = shlex.split(svc["ExecStart"][-1])
    command[0] = str(SERVER_BIN)
    env["CHRONIK_DATA_DIR"] = str(tmp_path / "data")
    # The example's RPC TLS files, issued here (same names, CN node-<id>) instead of /etc/chronik/tls.
    assert {"CHRONIK_RPC_TLS_CERT", "CHRONIK_RPC_TLS_KEY", "CHRONIK_RPC_TLS_CA"} <= set(env), \
        "the example secures the RPC port with TLS"
    node = make_pki(tmp_path / "pki", nodes=int(env["CHRONIK_NODE_ID"]))[f"node-{env['CHRONIK_NODE_ID']}"]
    env.update(CHRONIK_RPC_TLS_CERT=str(node.cert), CHRONIK_RPC_TLS_KEY=str(node.key), CHRONIK_RPC_TLS_CA=str(node.ca))
    # The example secures the Kafka port too: SASL over TLS, ACLs on; its certificate issued here.
    assert env.get("CHRONIK_LISTENERS", "").startswith("SASL_SSL://"), "the example uses SASL_SSL"
    assert env.get("CHRONIK_AUTHORIZER") == "acl" and env.get("CHRONIK_BOOTSTRAP_USER")
    kafka_pki = tmp_path / "kafka-pki"
    kafka_pki.mkdir()
    make_ca(kafka_pki, "ca")
    make_cert(kafka_pki, "ca", "kafka", "broker1", server=True)
    env.update(CHRONIK_TLS_CERT=str(kafka_pki / "kafka.pem"), CHRONIK_TLS_KEY=str(kafka_pki / "kafka.key"))
    fields = start_until_formed(command, env, tmp_path, local_ips=ips)
    assert fields["node"] == int(env["CHRONIK_NODE_ID"])


# ---------------------------------------------------------------------- a live cluster: health and metrics


@pytest.fixture(scope="module")
def live_cluster(tmp_path_factory):
    """Three nodes with a replicated topic that was produced to and read, and a consumer group
    with a committed offset: what the dashboard's panels need to have series."""
    c = Cluster(tmp_path_factory.mktemp("deploy-cluster"), 3)
    try:
        c.start()
        topic = unique_topic("deploy")
        a = admin(c.bootstrap())
        a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)],
                        operation_timeout=30)[topic].result(30)
        wait_until(lambda: all(topic in admin(n.bootstrap).list_topics(timeout=10).topics
                               for n in c.nodes.values()), 15, f"{topic} on every node")
        p = producer(c.bootstrap())
        for i in range(10):
            p.produce(topic, value=f"m{i}".encode(), partition=0)
        assert p.flush(30) == 0
        assert len(consume_range(c.bootstrap(), topic, 0, 0, 10, timeout_s=30)) == 10
        g = consumer(c.bootstrap(), **{"group.id": unique_topic("deploy-group")})
        try:
            for tp in g.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False):
                assert tp.error is None, tp.error
        finally:
            g.close()
        yield c
    finally:
        c.cleanup()


def scrape_families(addrs: list[str]) -> dict[str, set[str]]:
    """Sample names (histograms as _bucket/_sum/_count) of every node's /metrics -> label names."""
    out: dict[str, set[str]] = {}
    for addr in addrs:
        status, text = http_get(addr, "/metrics")
        assert status == 200, text
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s", line)
            assert m, f"unparsable metrics line {line!r}"
            labels = set(re.findall(r'([a-zA-Z_]\w*)="(?:[^"\\]|\\.)*"', m[2] or ""))
            out.setdefault(m[1], set()).update(labels)
    return out


@pytest.fixture(scope="module")
def exported(live_cluster) -> dict[str, set[str]]:
    return scrape_families([n.http for n in live_cluster.nodes.values()])


def test_probe_paths_answer_on_a_ready_node(live_cluster):
    c = _container(k8s_docs())
    for probe in ("readinessProbe", "livenessProbe"):
        path = c[probe]["httpGet"]["path"]
        for n in live_cluster.nodes.values():
            assert http_get(n.http, path)[0] == 200, f"{probe} {path} on {n.name}"


def run_healthcheck(doc: dict, http_addr: str) -> subprocess.CompletedProcess:
    """The compose health check, aimed at `http_addr` instead of the container's 127.0.0.1:9644."""
    cmd = compose_healthcheck(doc)
    host, _, port = http_addr.rpartition(":")
    assert any("127.0.0.1/9644" in x for x in cmd), cmd
    cmd = [x.replace("127.0.0.1/9644", f"{host}/{port}") for x in cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def test_compose_healthcheck_passes_on_a_ready_node(live_cluster):
    doc = yaml.safe_load(COMPOSE.read_text())
    for n in live_cluster.nodes.values():
        r = run_healthcheck(doc, n.http)
        assert r.returncode == 0, f"{n.name}: {r.stderr}"


def test_compose_healthcheck_fails_on_a_node_without_quorum(tmp_path):
    """One node of three alone: its HTTP endpoint answers, /health/ready says 503."""
    doc = yaml.safe_load(COMPOSE.read_text())
    http = f"127.0.0.1:{free_port()}"
    peers = ",".join(f"{i}@127.0.0.1:{free_port()}" for i in (1, 2, 3))
    node = ClusterNode(tmp_path / "alone", node_id=1, peers=peers, kafka_port=free_port(),
                       env={"CHRONIK_HTTP_ADDR": http})
    try:
        node.launch()
        wait_until(lambda: http_get(http, "/health/live")[0] == 200, 30, "the lone node's HTTP endpoint")
        assert http_get(http, "/health/ready")[0] == 503
        assert run_healthcheck(doc, http).returncode != 0
    finally:
        node.cleanup()
    assert run_healthcheck(doc, http).returncode != 0, "nothing listens there any more"


# ---------------------------------------------------------------------- Grafana
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}
ROWS = ["Overview", "Throughput", "Latency", "Replication", "Raft", "Consumer groups", "Storage"]


def all_panels(panels: list[dict]) -> list[dict]:
    out = []
    for p in panels:
        out.append(p)
        out += all_panels(p.get("panels") or [])
    return out


def promql_problems(expr: str, exported: dict[str, set[str]], where: str) -> list[str]:
    """Parses `expr`; every selector must name an exported sample (or a PENDING metric), and
    every label it matches or groups by must be on one of the expression's metrics."""
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    try:
        ast = promql_parser.parse(expr)
    except ValueError as e:
        return [f"{where}: {expr!r} does not parse: {e}"]
    names, used_labels, p = [], set(), []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            matchers = node.matchers.matchers if node.matchers else []
            name = node.name or next((m.value for m in matchers if m.name == "__name__"), None)
            names.append(name)
            used_labels.update(m.name for m in matchers if m.name != "__name__")
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier:
            used_labels.update(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier and node.modifier.matching:
            used_labels.update(node.modifier.matching.labels)

    promql_parser.walk(ast, visit)
    available = set(SCRAPE_LABELS)
    for name in names:
        if name in PENDING:
            available |= PENDING[name]
        elif name in exported:
            available |= exported[name]
        else:
            p.append(f"{where}: {name} is not exported by the broker (nor PENDING)")
    p += [f"{where}: label {lbl!r} is on none of {names}" for lbl in sorted(used_labels - available)]
    return p


def dashboard_problems(dash: dict, exported: dict[str, set[str]]) -> list[str]:
    p = []
    if dash.get("schemaVersion", 0) < 36:
        p.append(f"schemaVersion {dash.get('schemaVersion')}: too old for current Grafana")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds = [v for v in variables.values() if v.get("type") == "datasource" and v.get("query") == "prometheus"]
    if len(ds) != 1:
        return p + ["no Prometheus datasource variable"]
    ds_uid = "${" + ds[0]["name"] + "}"
    for v in variables.values():
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q)
            if not m:
                p.append(f"variable {v['name']}: {q!r} is not label_values(selector, label)")
                continue
            p += promql_problems(f"count by ({m[2]}) ({m[1]})", exported, f"variable {v['name']}")
    panels = all_panels(dash.get("panels", []))
    ids = [x.get("id") for x in panels]
    if len(set(ids)) != len(ids):
        p.append("panel ids are not unique")
    rows = [x["title"] for x in panels if x["type"] == "row"]
    p += [f"no {r!r} row" for r in ROWS if not any(t.startswith(r) for t in rows)]
    for panel in panels:
        if panel["type"] == "row":
            continue
        where = f"panel {panel.get('title')!r}"
        if (panel.get("datasource") or {}).get("uid") != ds_uid:
            p.append(f"{where}: datasource is not {ds_uid}")
        targets = panel.get("targets") or []
        if not targets or not all(t.get("expr") for t in targets):
            p.append(f"{where}: no query")
        for t in targets:
            if t.get("expr"):
                p += promql_problems(t["expr"], exported, where)
    return p


def test_dashboard_metrics_are_exported(exported):
    dash = json.loads(DASHBOARD.read_text())
    assert dashboard_problems(dash, exported) == []
    now_exported = sorted(set(PENDING) & set(exported))
    assert not now_exported, f"{now_exported} are exported now: remove them from PENDING"
    if PENDING:
        warnings.warn(f"dashboard panels for metrics the broker does not export yet (PENDING): {sorted(PENDING)}")


DASHBOARD_BREAKS = {
    "unknown-metric": lambda d: d["panels"][1]["targets"][0].update(expr="sum(chronik_nonexistent_total)"),
    "bare-histogram": lambda d: d["panels"][1]["targets"][0].update(expr="sum(chronik_request_seconds)"),
    "unknown-label": lambda d: d["panels"][1]["targets"][0].update(expr="sum by (topics) (chronik_topic_size_bytes)"),
    "unparsable": lambda d: d["panels"][1]["targets"][0].update(expr="sum(rate(chronik_requests_total))"),
    "no-targets": lambda d: d["panels"][1].update(targets=[]),
    "fixed-datasource": lambda d: d["panels"][1].update(datasource={"type": "prometheus", "uid": "abc"}),
}


@pytest.mark.parametrize("breakage", DASHBOARD_BREAKS.values(), ids=DASHBOARD_BREAKS.keys())
def test_dashboard_check_catches_a_broken_dashboard(breakage, exported):
    dash = json.loads(DASHBOARD.read_text())
    assert dash["panels"][1]["type"] != "row"
    breakage(dash)
    assert dashboard_problems(dash, exported)
