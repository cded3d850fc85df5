"""k8s/: schema validation (kubernetes-validate --strict) and the HA guide's fields, value for value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from .helpers import K8S_VERSION, ROOT, find, load_docs, run, tool

K8S = ROOT / "k8s"
MANIFESTS = ["deployment.yaml", "ingress.yaml", "redis.yaml", "postgres.yaml", "secret.example.yaml"]


def validate(*paths, version=K8S_VERSION):
    return run([tool("kubernetes-validate"), "--strict", "--quiet", "-k", version, *paths])


def _shipped_versions() -> list[str]:
    """Kubernetes versions whose strict schemas the installed kubernetes-validate ships."""
    try:
        import kubernetes_validate
    except ImportError:
        return []
    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    found = [m.group(1) for d in schemas.glob("v*-local-strict") if (m := re.match(r"v(\d+\.\d+\.\d+)-local-strict$", d.name))]
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


# The oldest schemas the validator ships, the reference version, and the newest.
@pytest.mark.parametrize("version", sorted({*(_shipped_versions()[:1] + _shipped_versions()[-1:]), K8S_VERSION}))
def test_kubernetes_validate_strict(version):
    result = validate(*(K8S / m for m in MANIFESTS), version=version)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path):
    docs = load_docs(K8S / "deployment.yaml")
    find(docs, "Deployment", "proxilion")["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    broken = tmp_path / "deployment.yaml"
    broken.write_text(yaml.safe_dump_all(docs))
    assert validate(broken).returncode != 0


def test_yamllint():
    result = run([tool("yamllint"), "--strict", "-c", ROOT / "tests/deploy/yamllint.yaml", K8S])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def docs():
    return load_docs(K8S / "deployment.yaml")


@pytest.fixture(scope="module")
def deployment(docs):
    return find(docs, "Deployment", "proxilion")


@pytest.fixture(scope="module")
def container(deployment):
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "proxilion")


def test_deployment_yaml_alone_brings_the_ha_features(docs):
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {
        ("Deployment", "proxilion"),
        ("Service", "proxilion"),
        ("HorizontalPodAutoscaler", "proxilion-hpa"),
        ("PodDisruptionBudget", "proxilion-pdb"),
        ("ConfigMap", "proxilion-config"),
    } <= kinds
    assert not any(d["kind"] == "Secret" for d in docs), "secrets belong in secret.example.yaml"


def test_replicas_and_rolling_update(deployment):
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}
    assert spec["selector"]["matchLabels"] == {"app": "proxilion"}
    assert spec["template"]["metadata"]["labels"]["app"] == "proxilion"


def test_affinity_is_the_guides(deployment):
    assert deployment["spec"]["template"]["spec"]["affinity"] == {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "proxilion"}}, "topologyKey": "topology.kubernetes.io/zone"}
            ],
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {"app": "proxilion"}},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ],
        }
    }


def test_probes_are_the_guides(container):
    assert container["livenessProbe"] == {
        "httpGet": {"path": "/health", "port": 8787},
        "initialDelaySeconds": 10,
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/health", "port": 8787},
        "initialDelaySeconds": 5,
        "periodSeconds": 5,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }


def test_graceful_shutdown_fits_in_the_grace_period(deployment, container, docs):
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30
    assert container["lifecycle"]["preStop"] == {"exec": {"command": ["/bin/sh", "-c", "sleep 5"]}}
    config = find(docs, "ConfigMap", "proxilion-config")["data"]
    grace, timeout = float(config.get("DRAIN_GRACE", 5)), float(config.get("DRAIN_TIMEOUT", 25))
    # preStop sleep + drain grace + in-flight wait, with >= 2 s left to stop the limiter and flush analytics.
    assert 5 + grace + timeout + 2 <= 30, (grace, timeout)


def test_container(container):
    assert container["image"].split(":")[0] == "proxilion"
    assert container["command"] == ["twistd", "--nodaemon", "--pidfile=", "proxilion"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"proxy": 8787, "admin": 8788}
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]  # the HPA's utilisation needs requests
    assert resources["limits"]["memory"]


def test_security_context(deployment, container):
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"]


def test_volumes(deployment, container):
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/var/lib/proxilion"]["name"]]
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    ca = mounts["/etc/proxilion/ca"]
    assert ca["readOnly"] is True
    secret = volumes[ca["name"]]["secret"]
    assert secret["secretName"] == "proxilion-ca"
    assert {i["key"] for i in secret["items"]} == {"ca.crt", "ca.key"}


def test_environment(docs, container):
    config = find(docs, "ConfigMap", "proxilion-config")["data"]
    assert {"name": "proxilion-config"} in [e["configMapRef"] for e in container["envFrom"]]
    assert config["PORT"] == "8787" and config["ADMIN_PORT"] == "8788"
    assert config["PROXILION_DATA_DIR"] == "/var/lib/proxilion"
    assert config["CA_CERT_FILE"] == "/etc/proxilion/ca/ca.crt"
    assert config["CA_KEY_FILE"] == "/etc/proxilion/ca/ca.key"
    assert config["REDIS_URL"] == "redis://redis:6379"
    assert config["RATE_LIMIT_STORE"] == "redis"
    env = {e["name"]: e for e in container["env"]}
    assert env["ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "proxilion-secrets"
    assert env["ANALYTICS_DSN"]["valueFrom"]["secretKeyRef"]["name"] == "proxilion-secrets"
    assert all(isinstance(v, str) for v in config.values()), "ConfigMap values must be strings"


def test_configmap_names_only_real_settings(docs):
    from proxilion.config import SPECS, load_settings

    names = {s.env for s in SPECS if s.env}
    config = find(docs, "ConfigMap", "proxilion-config")["data"]
    assert set(config) <= names, set(config) - names
    # And the values parse.
    load_settings(environ={k: v for k, v in config.items() if k in names})


def test_service_is_the_guides(docs):
    service = find(docs, "Service", "proxilion")["spec"]
    assert service["type"] == "ClusterIP"
    assert service["selector"] == {"app": "proxilion"}
    assert service["sessionAffinity"] == "None"
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["ports"]] == [("proxy", 8787, 8787), ("admin", 8788, 8788)]


def test_hpa_is_the_guides(docs):
    hpa = find(docs, "HorizontalPodAutoscaler", "proxilion-hpa")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "proxilion"},
        "minReplicas": 3,
        "maxReplicas": 20,
        "metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 80}}},
        ],
        "behavior": {
            "scaleDown": {"stabilizationWindowSeconds": 300, "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}]},
            "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
        },
    }


def test_pdb_is_the_guides(docs):
    pdb = find(docs, "PodDisruptionBudget", "proxilion-pdb")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"] == {"minAvailable": 2, "selector": {"matchLabels": {"app": "proxilion"}}}


def test_ingress_routes_to_the_proxy_port_only():
    ingress = find(load_docs(K8S / "ingress.yaml"), "Ingress", "proxilion")
    backends = [p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert backends == [{"name": "proxilion", "port": {"name": "proxy"}}]


def test_redis_is_the_guides_cluster():
    docs = load_docs(K8S / "redis.yaml")
    sts = find(docs, "StatefulSet", "redis")
    assert sts["spec"]["serviceName"] == "redis"
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["selector"]["matchLabels"] == {"app": "redis"}
    assert sts["spec"]["template"]["metadata"]["labels"]["app"] == "redis"
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "redis:7-alpine"
    assert container["command"][:3] == ["redis-server", "--cluster-enabled", "yes"]
    assert 6379 in [p["containerPort"] for p in container["ports"]]
    service = find(docs, "Service", "redis")["spec"]
    assert service["clusterIP"] == "None"
    assert 6379 in [p["port"] for p in service["ports"]]


def test_postgres_is_the_guides():
    docs = load_docs(K8S / "postgres.yaml")
    sts = find(docs, "StatefulSet", "postgres")
    assert sts["spec"]["serviceName"] == "postgres"
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["selector"]["matchLabels"] == {"app": "postgres"}
    container = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "postgres")
    assert container["image"] == "postgres:15"
    env = {e["name"]: e for e in container["env"]}
    assert env["POSTGRES_DB"]["value"] == "proxilion"
    assert find(docs, "Service", "postgres")["spec"]["clusterIP"] == "None"
    # Writes go to the primary only, never spread over the standbys.
    primary = find(docs, "Service", "postgres-primary")["spec"]["selector"]
    assert primary["statefulset.kubernetes.io/pod-name"] == "postgres-0"
    example = find(load_docs(K8S / "secret.example.yaml"), "Secret", "proxilion-secrets")
    assert "@postgres-primary:5432/proxilion" in example["stringData"]["ANALYTICS_DSN"]


def test_kustomization():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    resources = kustomization["resources"]
    assert set(resources) == {"deployment.yaml", "ingress.yaml", "redis.yaml", "postgres.yaml"}
    for resource in resources:
        assert (K8S / resource).is_file()
    assert "secret.example.yaml" not in resources
    names = {(d["kind"], d["metadata"]["name"]) for r in resources for d in load_docs(K8S / r)}
    assert len(names) == sum(len(load_docs(K8S / r)) for r in resources), "duplicate resource names"
