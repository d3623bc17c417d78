"""The stack's shape: one of each by default, a replicated cluster and replicas on ports in the engineer's band."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.adapters.config import PORTS, PlatformSettings
from services.adapters.kafka import replication_for
from services.cli.stack import Stack, Topology, TopologyMismatch

OFFSET = 5000


def _stack(tmp_path: Path, topology: Topology | None = None) -> Stack:
    return Stack(PlatformSettings(state_dir=tmp_path, port_offset=OFFSET), topology)


def test_the_default_is_one_broker_and_one_process_of_each(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    assert [n for n in stack.components if n.startswith(("kafka", "records", "ingest"))] == [
        "kafka", "ingest", "records"]
    assert stack.bootstrap == stack.settings.kafka_bootstrap == f"127.0.0.1:{9092 + OFFSET}"
    props = stack._kafka_props(1)
    assert props["controller.quorum.bootstrap.servers"] == f"127.0.0.1:{9093 + OFFSET}"
    assert "controller.quorum.voters" not in props and "min.insync.replicas" not in props
    assert props["offsets.topic.replication.factor"] == props["transaction.state.log.replication.factor"] == "1"
    assert replication_for(1) == (1, 1)


def test_three_brokers_replicate_three_times_and_need_two_in_sync(tmp_path: Path) -> None:
    stack = _stack(tmp_path, Topology(brokers=3, records=2, ingest=2))
    assert stack.brokers == ["kafka", "kafka-2", "kafka-3"]
    assert replication_for(3) == (3, 2)
    voters = f"1@127.0.0.1:{9093 + OFFSET},2@127.0.0.1:{9095 + OFFSET},3@127.0.0.1:{9097 + OFFSET}"
    for k in (1, 2, 3):
        props = stack._kafka_props(k)
        assert props["node.id"] == str(k)
        assert props["controller.quorum.voters"] == voters
        assert props["default.replication.factor"] == props["offsets.topic.replication.factor"] == "3"
        assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
        assert props["unclean.leader.election.enable"] == "false"
    # Every client is told every broker, the services through their environment.
    assert stack.bootstrap == ",".join(f"127.0.0.1:{p + OFFSET}" for p in (9092, 9094, 9096))
    assert stack.components["records-2"].env["HEALTHGOV_KAFKA_BOOTSTRAP"] == stack.bootstrap
    assert {stack.components[n].env["HEALTHGOV_INSTANCE"] for n in ("records", "records-2")} == {"0", "1"}


def test_every_port_stays_within_its_base_band_and_none_is_shared(tmp_path: Path) -> None:
    stack = _stack(tmp_path, Topology(brokers=9, records=9, ingest=9))
    ports = [int(c.url.rsplit(":", 1)[1]) for c in stack.components.values() if ":" in c.url and "cosigns" not in c.url]
    ports += [stack.controller_port(k) for k in range(1, 10)]
    assert len(ports) == len(set(ports)), "two components share a port"
    bases = sorted(set(PORTS.values()))
    for port in ports:
        base = max(b for b in bases if b <= port - OFFSET)
        assert port - OFFSET - base <= 99, f"port {port} leaves its base band"


def test_the_shape_is_kept_and_a_cluster_of_another_size_is_refused(tmp_path: Path) -> None:
    stack = _stack(tmp_path, Topology(brokers=3, records=2))
    stack.save_topology()
    again = _stack(tmp_path)
    assert again.topology == Topology(brokers=3, records=2)
    assert "records-2" in again.components and "kafka-3" in again.components
    assert json.loads((tmp_path / "topology.json").read_text())["brokers"] == 3
    (tmp_path / "kafka" / "data").mkdir(parents=True)
    (tmp_path / "kafka" / "data" / "meta.properties").write_text("formatted\n")
    with pytest.raises(TopologyMismatch, match="3-broker"):
        again.with_topology(brokers=1).save_topology()
    with pytest.raises(ValueError):
        Topology(brokers=0)
