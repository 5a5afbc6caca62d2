"""deploy/k8s rendered by kubectl's built-in kustomize and validated offline against the
Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields are errors), then
held to the rules of the issue: probes, resources, disruption budgets, CPU autoscaling of
the workers, secrets as files, and network policies that let only the ingress controller
reach the orchestrator and only Sortie's services reach Redis."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES = "1.30.0"  # the oldest minor still supported upstream when this was written
SERVICES = {"orchestrator": "http", "m365-worker": "metrics", "ent-worker": "metrics"}


def kustomize(folder: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not installed: run scripts/bootstrap-test.sh"
    out = subprocess.run(
        [kubectl, "kustomize", str(folder)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def production_secrets(tmp: Path) -> Path:
    """A copy of deploy/k8s with stand-ins for the files the operator keeps out of git."""
    copy = tmp / "k8s"
    shutil.copytree(K8S, copy)
    overlay = yaml.safe_load((copy / "overlays/production/kustomization.yaml").read_text())
    for gen in overlay["secretGenerator"]:
        for entry in gen["files"]:
            path = copy / "overlays/production" / entry.split("=", 1)[1]
            path.write_text("stand-in\n")
    return copy / "overlays" / "production"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("k8s")
    return {
        "production": kustomize(production_secrets(tmp)),
        "evaluation": kustomize(K8S / "overlays" / "evaluation"),
        "redis": kustomize(K8S / "redis"),
    }


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.mark.parametrize("overlay", ["production", "evaluation", "redis"])
def test_every_rendered_object_is_valid(rendered: dict, overlay: str) -> None:
    errors = []
    for doc in rendered[overlay]:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: checked against the Services below
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as err:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {err.message}")
    assert errors == []


@pytest.mark.parametrize("overlay", ["production", "evaluation"])
def test_deployments_have_probes_resources_and_no_privileges(rendered: dict, overlay: str) -> None:
    docs = rendered[overlay]
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == set(SERVICES)
    assert {d["metadata"]["namespace"] for d in docs if d["kind"] != "Namespace"} == {
        f"sortie{'-eval' * (overlay != 'production')}"
    }
    for name, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        (c,) = pod["containers"]
        port = SERVICES[name]
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
        assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
        assert sc["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("overlay", ["production", "evaluation"])
def test_every_secret_is_a_file_from_a_generated_secret(rendered: dict, overlay: str) -> None:
    docs = rendered[overlay]
    secrets = by_kind(docs, "Secret")
    for name, dep in by_kind(docs, "Deployment").items():
        pod = dep["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "secrets")
        secret = secrets[volume["secret"]["secretName"]]  # the generated, hashed name
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "secrets")
        env = {e["name"]: e.get("value", "") for e in pod["containers"][0]["env"]}
        files = [v for v in env.values() if v.startswith(mount["mountPath"] + "/")]
        assert files, name
        for path in files:
            assert path.removeprefix(mount["mountPath"] + "/") in secret["data"], (name, path)
        user = env["SORTIE_REDIS_URL"].split("//")[1].split("@")[0]
        # $(SORTIE_REDIS_HOST) is expanded by the kubelet from the ConfigMap of envFrom.
        (config,) = [n for n in by_kind(docs, "ConfigMap") if n.startswith("sortie-config")]
        assert "$(SORTIE_REDIS_HOST)" in env["SORTIE_REDIS_URL"]
        assert "SORTIE_REDIS_HOST" in by_kind(docs, "ConfigMap")[config]["data"]
        env_from = pod["containers"][0]["envFrom"][0]["configMapRef"]["name"]
        assert env_from == config
        assert user == name and ":" not in user, "the password comes from its file"
        for key in env:
            if any(w in key for w in ("TOKEN", "PASSWORD", "SECRET")):
                assert key.endswith("_FILE"), f"{name}: {key} inline"


def test_workers_scale_on_cpu_and_each_service_keeps_a_replica(rendered: dict) -> None:
    docs = rendered["production"]
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == {"m365-worker", "ent-worker"}
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert hpa["spec"]["minReplicas"] >= 2
    pdbs = by_kind(docs, "PodDisruptionBudget")
    for name in SERVICES:
        selector = pdbs[name]["spec"]["selector"]["matchLabels"]
        assert selector["app.kubernetes.io/name"] == name
        assert pdbs[name]["spec"]["minAvailable"] == 1


def allowed_from(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [peer for rule in policy["spec"].get("ingress", []) for peer in rule.get("from", [])]


def test_only_the_orchestrator_is_reachable_from_outside(rendered: dict) -> None:
    docs = rendered["production"]
    policies = by_kind(docs, "NetworkPolicy")
    deny = policies["sortie-default-deny-ingress"]
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    outside = set()
    for policy in policies.values():
        for peer in allowed_from(policy):
            assert "ipBlock" not in peer, "no address range is let in"
            ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            if ns == "ingress-nginx":
                outside.add(policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"])
    assert outside == {"orchestrator"}
    (ingress,) = by_kind(docs, "Ingress").values()
    assert ingress["metadata"]["name"] == "orchestrator" and ingress["spec"]["tls"]
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/ssl-redirect"] == "true"
    assert all(
        s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in by_kind(docs, "Service").values()
    )


def test_only_sorties_services_reach_redis(rendered: dict) -> None:
    (policy,) = rendered["redis"]
    assert policy["metadata"]["namespace"] == "sortie-redis"
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "redis"}
    (peer,) = allowed_from(policy)
    label = peer["podSelector"]["matchLabels"]
    ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
    assert ns == "sortie"
    clients = {
        name
        for name, dep in by_kind(rendered["production"], "Deployment").items()
        if label.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    }
    assert clients == set(SERVICES)


def test_the_service_monitor_scrapes_every_service(rendered: dict) -> None:
    docs = rendered["production"]
    (monitor,) = by_kind(docs, "ServiceMonitor").values()
    ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    wanted = set(monitor["spec"]["selector"]["matchExpressions"][0]["values"])
    assert wanted == set(SERVICES)
    for name, service in by_kind(docs, "Service").items():
        assert {p["name"] for p in service["spec"]["ports"]} <= ports, name


def test_the_registry_config_map_loads_and_names_no_simulator(rendered: dict) -> None:
    from sortie_ent.registry import parse_registry

    maps = by_kind(rendered["production"], "ConfigMap")
    (name,) = [n for n in maps if n.startswith("sortie-ent-registry")]
    registry = parse_registry(maps[name]["data"]["ent-registry.yaml"])
    assert {a.name for a in registry.applications} == {"esper", "escada", "mer", "ism"}
    urls = [a.logout_url or a.backchannel_logout_uri or "" for a in registry.applications]
    assert all(u == "" or u.startswith("https://") for u in urls)
    assert "sim-" not in maps[name]["data"]["ent-registry.yaml"]
