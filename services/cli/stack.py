"""Start, stop and inspect the local platform: Kafka, OPA, the five services (and, in dev, a witness).

Each component is a background process with a pid file and a log file in the
state directory. ``up`` waits until every health check passes; if one fails it
stops, prints that component's log tail and exits non-zero.

The stack's shape (``Topology``: how many Kafka brokers, records and ingest
processes) is chosen at ``up`` and kept in the state directory, so that
``down``, ``restart`` and ``status`` run later see the same components. The
default is one of each, which is what ``make run`` and ``make test`` start.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.adapters.auth import load_registry
from services.adapters.config import REPO_ROOT, PlatformSettings
from services.adapters.keys import PlatformKeys
from services.cli.supervisor import stop_supervisor
from services.contracts.topics import LARGEST_MESSAGE_BYTES

SERVICES = ("portal", "ingest", "records", "audit", "oversight")
REPLICATED = ("ingest", "records")  # services the stack can run as several processes
# Where a further replica or broker listens, above its service's (offset-shifted) base port: replica k of a service
# on base + 10k (8001 -> 8011, 8021), broker k on 9092 + 2k and its controller on 9093 + 2k; every one stays
# within +0..+99 of its base, so two engineers' offsets (multiples of 100) never collide.
REPLICA_PORT_STEP = 10
BROKER_PORT_STEP = 2
MAX_REPLICAS = 9
MAX_BROKERS = 9
TOPOLOGY_FILE = "topology.json"
START_S = 90.0  # how long a component may take to answer healthy once launched
CLUSTER_START_S = 240.0  # a cluster's brokers: three JVMs at once, then a controller election
RECORDED_PREFIXES = ("HEALTHGOV_", "OTEL_")  # the environment a restarted component inherits from `up`


@dataclass(frozen=True)
class Topology:
    """How many processes of each scalable part the stack runs."""

    brokers: int = 1
    records: int = 1
    ingest: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.brokers <= MAX_BROKERS:
            raise ValueError(f"brokers must be 1 to {MAX_BROKERS}")
        for name in REPLICATED:
            if not 1 <= getattr(self, name) <= MAX_REPLICAS:
                raise ValueError(f"{name} must be 1 to {MAX_REPLICAS}")

    def replicas(self, service: str) -> int:
        return int(getattr(self, service)) if service in REPLICATED else 1


def broker_name(k: int) -> str:
    """Broker ``k`` (1-based) of the cluster: the first is ``kafka``, as in a one-broker stack."""
    return "kafka" if k == 1 else f"kafka-{k}"


def replica_name(service: str, k: int) -> str:
    """Process ``k`` (1-based) of a service: the first keeps the service's name, port and instance ``0``."""
    return service if k == 1 else f"{service}-{k}"


@dataclass
class Component:
    """One process of the stack and how to tell it is healthy."""

    name: str
    argv: list[str]
    healthy: Callable[[], bool]
    url: str
    prepare: Callable[[], None] = lambda: None
    after_start: Callable[[], None] = lambda: None
    env: dict[str, str] = field(default_factory=dict)
    build_argv: Callable[[], list[str]] | None = None  # an argv that needs the Kafka jars is found at launch


class Stack:
    """The platform's processes, rooted at one state directory."""

    def __init__(self, settings: PlatformSettings | None = None, topology: Topology | None = None) -> None:
        self.settings = settings or PlatformSettings()
        self.state = self.settings.state_dir
        self.run_dir = self.state / "run"
        self.log_dir = self.state / "logs"
        # A bootstrap the caller named is kept (and inherited by the children); otherwise it is the stack's own.
        self._explicit_bootstrap = self.settings.kafka_bootstrap != f"127.0.0.1:{self.settings.port('kafka')}"
        self.topology = topology or self.saved_topology() or Topology()
        if not self._explicit_bootstrap:
            # Every client is told of every broker: one that knows only a dead broker could not start.
            self.settings.kafka_bootstrap = self.bootstrap
        self.components = {c.name: c for c in self._components()}

    # --- the stack's shape ---------------------------------------------------------------

    def with_topology(self, brokers: int | None = None, records: int | None = None,
                      ingest: int | None = None) -> Stack:
        """This stack with the parts given changed (``up --brokers 3``); the others as saved."""
        current = self.topology
        return Stack(self.settings, Topology(
            brokers=current.brokers if brokers is None else brokers,
            records=current.records if records is None else records,
            ingest=current.ingest if ingest is None else ingest,
        ))

    def saved_topology(self) -> Topology | None:
        """The shape ``up`` last started in this state directory, if any."""
        path = self.state / TOPOLOGY_FILE
        if not path.exists():
            return None
        saved = json.loads(path.read_text())
        return Topology(**{k: int(saved[k]) for k in ("brokers", "records", "ingest") if k in saved})

    def save_topology(self) -> None:
        """Keep the shape for later commands; a state dir whose Kafka data has another size is refused.

        A broker's data is formatted for one quorum: a cluster of another size
        cannot start on it, so instead of failing in Kafka's log the stack says so.
        """
        saved = self.saved_topology()
        formatted = (self.state / "kafka" / "data" / "meta.properties").exists()
        had = saved.brokers if saved else 1
        if formatted and had != self.topology.brokers:
            raise TopologyMismatch(f"{self.state} holds the data of a {had}-broker Kafka cluster; start it with "
                                   f"--brokers {had} or use another HEALTHGOV_STATE_DIR")
        self.state.mkdir(parents=True, exist_ok=True)
        fields = {"brokers": self.topology.brokers, "records": self.topology.records,
                  "ingest": self.topology.ingest}
        (self.state / TOPOLOGY_FILE).write_text(json.dumps(fields) + "\n")

    def broker_port(self, k: int) -> int:
        return self.settings.port("kafka") + BROKER_PORT_STEP * (k - 1)

    def controller_port(self, k: int) -> int:
        return self.settings.port("kafka-controller") + BROKER_PORT_STEP * (k - 1)

    @property
    def brokers(self) -> list[str]:
        return [broker_name(k) for k in range(1, self.topology.brokers + 1)]

    @property
    def bootstrap(self) -> str:
        """Every broker's address (clients need only one live one to find the rest)."""
        if self._explicit_bootstrap:
            return self.settings.kafka_bootstrap
        return ",".join(f"127.0.0.1:{self.broker_port(k)}" for k in range(1, self.topology.brokers + 1))

    def replica_port(self, service: str, k: int) -> int:
        return self.settings.port(service) + REPLICA_PORT_STEP * (k - 1)

    def replica_url(self, service: str, k: int) -> str:
        return f"http://127.0.0.1:{self.replica_port(service, k)}"

    @property
    def maildir(self) -> Path:
        """Where the local SMTP sink files every e-mail (a Maildir)."""
        return self.state / "mail"

    # --- component definitions -------------------------------------------------

    def _kafka_libs(self) -> str:
        home = os.environ.get("KAFKA_HOME")
        if home and Path(home, "libs").is_dir():
            return str(Path(home, "libs", "*"))
        libs = REPO_ROOT / ".cache" / "kafka-libs"
        if not libs.is_dir():
            raise RuntimeError("Kafka jars missing: run deploy/setup.sh (make setup)")
        return str(libs / "*")

    def _broker_dir(self, k: int) -> Path:
        return self.state / ("kafka" if k == 1 else f"kafka-{k}")

    def _kafka_props(self, k: int) -> dict[str, str]:
        """Broker ``k``'s server.properties: a combined broker and KRaft controller on loopback.

        One broker (the default) is its own single-voter quorum. A cluster of
        N brokers is N combined broker-controllers with a static quorum of all
        N voters (a majority must be up to elect a controller, so three
        brokers survive the loss of any one); its internal topics have three
        replicas of which two must be in sync, like the platform's own topics
        (``replication_for``).
        """
        n = self.topology.brokers
        broker = f"127.0.0.1:{self.broker_port(k)}"
        controller = f"127.0.0.1:{self.controller_port(k)}"
        replicas = str(min(3, n))
        min_isr = "2" if n >= 3 else "1"
        props = {
            "process.roles": "broker,controller",
            "node.id": str(k),
            "listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self._broker_dir(k) / "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            # Topics carry their own max.message.bytes (services/contracts/topics.py); this is the default for
            # any other. A follower (and the broker's own fetches) must fetch the largest record any topic holds.
            "message.max.bytes": "10485760",
            "replica.fetch.max.bytes": str(LARGEST_MESSAGE_BYTES),
            "replica.fetch.response.max.bytes": str(max(LARGEST_MESSAGE_BYTES, 10 * 1024 * 1024)),
        }
        if n == 1:
            props["controller.quorum.bootstrap.servers"] = controller
        else:
            props["controller.quorum.voters"] = ",".join(
                f"{j}@127.0.0.1:{self.controller_port(j)}" for j in range(1, n + 1))
            props.update({
                "default.replication.factor": replicas,
                "min.insync.replicas": min_isr,
                # A killed broker is fenced, and its partitions led by another replica, within about 3 s
                # (Kafka's default session of 9 s is that much more unavailability per crash).
                "broker.session.timeout.ms": "3000",
                "broker.heartbeat.interval.ms": "1000",
                "unclean.leader.election.enable": "false",  # never elect a replica that may lack acked data
            })
        return props

    def _cluster_id(self) -> str:
        """The id every broker of this state directory is formatted with (kept beside the data)."""
        path = self.state / "kafka-cluster-id"
        if path.exists():
            return path.read_text().strip()
        cluster_id = ""
        while not cluster_id or cluster_id.startswith("-"):
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        path.write_text(cluster_id + "\n")
        return cluster_id

    def _kafka_prepare(self, k: int = 1) -> None:
        kdir = self._broker_dir(k)
        data = kdir / "data"
        kdir.mkdir(parents=True, exist_ok=True)
        (kdir / "server.properties").write_text("".join(f"{p}={v}\n" for p, v in self._kafka_props(k).items()))
        if not (data / "meta.properties").exists():
            single = self.topology.brokers == 1
            subprocess.run(
                [
                    "java", "-cp", self._kafka_libs(), "kafka.tools.StorageTool", "format",
                    "-t", self._cluster_id(), "-c", str(kdir / "server.properties"),
                    *(["--standalone"] if single else []),
                ],
                check=True, capture_output=True, text=True,
            )

    def _kafka_argv(self, k: int = 1) -> list[str]:
        kdir = self._broker_dir(k)
        # One broker gets 1 GiB; each of a cluster's brokers half of that, so three fit beside the services.
        heap = "1g" if self.topology.brokers == 1 else "512m"
        return [
            # Regions of 16 MiB: ingest's messages (up to a few MiB) are then ordinary young objects, not
            # "humongous" ones allocated straight into the old generation (with the default 1 MiB regions
            # the broker ran a concurrent marking cycle every few seconds under ingest load).
            "java", f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:G1HeapRegionSize=16m",
            "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={REPO_ROOT / 'deploy' / 'kafka' / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp", self._kafka_libs(), "kafka.Kafka", str(kdir / "server.properties"),
        ]

    def _kafka_healthy(self, k: int = 1) -> bool:
        """Broker ``k`` answers metadata requests (with a cluster: and all of the cluster's brokers are in it)."""
        if not _port_open(self.broker_port(k)):
            return False
        try:
            from kafka.admin import KafkaAdminClient

            admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{self.broker_port(k)}",
                                     request_timeout_ms=3000)
            try:
                admin.list_topics()
                if self.topology.brokers > 1:
                    brokers = admin.describe_cluster()["brokers"]
                    return k in {int(b["broker_id"]) for b in brokers if not b.get("is_fenced")}
            finally:
                admin.close()
            return True
        except Exception:
            return False

    def _kafka_topics(self) -> None:
        """Create the topics once every broker is up (their replicas are spread over all of them)."""
        from services.adapters.kafka import ensure_topics

        if all(self.pid(b) is not None for b in self.brokers):
            self._wait_for_brokers()
            ensure_topics(self.bootstrap, brokers=self.topology.brokers)

    def _wait_for_brokers(self, timeout_s: float = 60) -> None:
        """Until every broker of the cluster is registered: topics of three replicas need three brokers."""
        if self.topology.brokers == 1:
            return
        from kafka.admin import KafkaAdminClient

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
                try:
                    brokers = admin.describe_cluster()["brokers"]
                    if sum(not b.get("is_fenced") for b in brokers) >= self.topology.brokers:
                        return
                finally:
                    admin.close()
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Kafka cluster did not form: {exc!r}") from exc
            if time.monotonic() > deadline:
                raise RuntimeError("the Kafka cluster did not form: not every broker registered")
            time.sleep(0.5)

    def _opa_binary(self) -> str:
        local = REPO_ROOT / ".cache" / "bin" / "opa"
        found = str(local) if local.exists() else shutil.which("opa")
        if not found:
            raise RuntimeError("opa missing: run deploy/setup.sh (make setup)")
        return found

    def _components(self) -> list[Component]:
        s = self.settings
        comps = [
            Component(
                name=broker_name(k), argv=[], healthy=lambda k=k: self._kafka_healthy(k),
                url=f"127.0.0.1:{self.broker_port(k)}",
                prepare=lambda k=k: self._kafka_prepare(k), after_start=self._kafka_topics,
                build_argv=lambda k=k: self._kafka_argv(k),
            )
            for k in range(1, self.topology.brokers + 1)
        ]
        comps.append(
            Component(
                name="opa",
                argv=[
                    "@opa", "run", "--server", "--addr", f"127.0.0.1:{s.port('opa')}",
                    "--log-level", "error", "--skip-version-check",
                    str(REPO_ROOT / "policies"), f"healthgov.registry:{s.registry_file}",
                ],
                healthy=lambda: _http_ok(f"{s.opa_url}/health"),
                url=s.opa_url,
                # Garbage collection was 14% of OPA's CPU: at GOGC=400 a decision costs about 25% less.
                env={"GOGC": "400"},
            )
        )
        if s.dev_mode:
            # The local SMTP sink the portal e-mails notices to (services/cli/mailsink.py); production uses a relay.
            comps.append(Component(
                name="mail",
                argv=[sys.executable, "-m", "services.cli.mailsink", "--port", str(s.port("mail")),
                      "--maildir", str(self.maildir)],
                healthy=lambda: _port_open(s.port("mail")), url=f"smtp://127.0.0.1:{s.port('mail')}",
            ))
        # Children are told every broker, unless the caller named its own bootstrap (then it is inherited).
        kafka_env = {} if self._explicit_bootstrap else {"HEALTHGOV_KAFKA_BOOTSTRAP": self.bootstrap}
        for name in SERVICES:
            for k in range(1, self.topology.replicas(name) + 1):
                port = self.replica_port(name, k)
                comps.append(
                    Component(
                        name=replica_name(name, k),
                        argv=[
                            sys.executable, "-m", "uvicorn", f"services.{name}.app:create_app",
                            "--factory", "--host", "127.0.0.1", "--port", str(port),
                            "--log-level", "warning", "--no-access-log",
                        ],
                        healthy=lambda port=port: _http_ok(f"http://127.0.0.1:{port}/healthz"),
                        url=f"http://127.0.0.1:{port}",
                        # Each process has its own stable instance name: a restart takes over its own
                        # transactions and partitions, and replicas never fence each other.
                        env={"HEALTHGOV_INSTANCE": str(k - 1), **kafka_env},
                    )
                )
        if s.dev_mode:
            # A demo witness with the platform's own witness key, so that a local log is witnessed
            # from the start. In production a witness is an independent party running elsewhere.
            comps.append(Component(
                name="witness",
                argv=[sys.executable, "-m", "services.cli.main", "audit", "witness", "--interval", "5"],
                healthy=self._witness_started, url=f"cosigns {s.audit_url}", prepare=self._witness_mark,
                env=kafka_env,
            ))
        return comps

    def _witness_mark(self) -> None:
        """Where this start's output begins in the (appended) log."""
        log = self.log_file("witness")
        self._witness_log_from = log.stat().st_size if log.exists() else 0

    def _witness_started(self) -> bool:
        """The witness has loaded its key and the log's (it has no port; its first line says so)."""
        if self.pid("witness") is None:
            return False
        log = self.log_file("witness")
        if not log.exists():
            return False
        with log.open("rb") as fh:
            fh.seek(getattr(self, "_witness_log_from", 0))
            return any(line.startswith(b"witness ") for line in fh.read().splitlines())

    # --- process control ----------------------------------------------------------

    def _pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        path = self._pidfile(name)
        if not path.exists():
            return None
        pid = int(path.read_text().strip() or 0)
        if pid <= 0:
            return None
        _reap(pid)  # a child of ours that exited is a zombie until reaped
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return None
        if _exited(pid):  # killed, and not yet reaped by whichever process started it
            return None
        return pid

    def _end_leftovers(self, name: str) -> None:
        """Kill what remains of a component whose main process died (e.g. ingest's validation workers).

        Each component leads its own process group; the group outlives its
        leader, and while any member lives no new process can take its id, so
        the group of a recorded pid that is no longer alive is that component's.
        """
        path = self._pidfile(name)
        recorded = int(path.read_text().strip() or 0) if path.exists() else 0
        if recorded > 0 and self.pid(name) is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(recorded, signal.SIGKILL)

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_file(name)
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def prepare_state(self) -> None:
        """Directories and keys, created before any service starts (no races)."""
        for d in (self.state, self.run_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        orgs = list(load_registry(self.settings.registry_file)["orgs"])
        PlatformKeys(self.state).ensure_all(orgs)

    def start(self, name: str, timeout_s: float | None = None) -> None:
        """Start one component and wait for its health check; raise with its log tail.

        The wait is counted from the launch, after the component's preparation
        (formatting a broker's storage is a JVM run of its own). A broker of a
        cluster waits longer (``CLUSTER_START_S``): its quorum's JVMs start at
        once and must elect a controller before any of them answers.
        """
        comp = self.components[name]
        clustered = name in self.brokers and self.topology.brokers > 1
        timeout_s = timeout_s or (CLUSTER_START_S if clustered else START_S)
        if clustered:
            # No broker of a cluster is healthy without a quorum of controllers: the dead ones start together
            # (formatted with one cluster id, made here before they race for it).
            self._cluster_id()
            others = [threading.Thread(target=self._launch, args=(other, self.components[other]))
                      for other in self.brokers if other != name and self.pid(other) is None]
            for t in others:
                t.start()
            for t in others:
                t.join()
        launched = False
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pid(name) is None:
                # Not running, or a process found at start died while we waited (a crashed one on its way
                # out): start it; only a process started here that dies is a failure.
                if launched:
                    break
                self._launch(name, comp)
                launched = True
                deadline = time.monotonic() + timeout_s
            if comp.healthy():
                comp.after_start()
                return
            time.sleep(0.3)
        raise ComponentFailed(name, self.log_tail(name))

    def _launch(self, name: str, comp: Component) -> None:
        self._end_leftovers(name)
        comp.prepare()
        argv = comp.build_argv() if comp.build_argv else list(comp.argv)
        if argv and argv[0] == "@opa":
            argv[0] = self._opa_binary()
        log = open(self.log_file(name), "ab")  # noqa: SIM115 - handed to the child
        env = {**os.environ, **self._recorded_env(), **self._settings_env(), **comp.env}
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT, env=env, start_new_session=True,
        )
        self._pidfile(name).write_text(str(proc.pid))

    def record_environment(self) -> None:
        """Keep the platform settings of the environment ``up`` ran in, for every later start of a component.

        A component started again (``stack restart``, the supervisor, a test) must run as its predecessor
        did, whoever starts it and from whatever shell: with the same trace exporter, metrics token, key
        provider. So the ``HEALTHGOV_*`` and ``OTEL_*`` variables present at ``up`` are written to the run
        directory (owner only: a metrics token is a secret) and win over the starter's own. An ``up`` that
        finds components running (starting what crashed) keeps what was recorded, so that every component
        of one stack runs with one set of settings. To change a setting, bring the stack down and up again.
        """
        wanted = {k: v for k, v in os.environ.items() if k.startswith(RECORDED_PREFIXES)}
        path = self._environment_file()
        tmp = path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_text(json.dumps(wanted, indent=2, sort_keys=True))
        tmp.replace(path)

    def _recorded_env(self) -> dict[str, str]:
        path = self._environment_file()
        return json.loads(path.read_text()) if path.exists() else {}

    def _environment_file(self) -> Path:
        return self.run_dir / "environment.json"

    def _settings_env(self) -> dict[str, str]:
        """The settings a child must share with this stack (one started by a test has its own dir and ports)."""
        env = {"HEALTHGOV_STATE_DIR": str(self.state), "HEALTHGOV_PORT_OFFSET": str(self.settings.port_offset),
               "HEALTHGOV_ENV": self.settings.env}
        if self.settings.database_url:
            env["HEALTHGOV_DATABASE_URL"] = self.settings.database_url
        return env

    def stop(self, name: str, timeout_s: float = 30) -> None:
        pid = self.pid(name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self.pid(name) is not None and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.2)
            if self.pid(name) is not None:
                os.killpg(pid, signal.SIGKILL)
                time.sleep(0.2)
            _reap(pid)
        self._end_leftovers(name)
        self._pidfile(name).unlink(missing_ok=True)

    def up(self, progress: Callable[[str], None] = lambda _n: None,
           started: Callable[[str], None] = lambda _n: None) -> None:
        """Prepare the state, record the environment, start every component in order (``progress`` before
        each start, ``started`` after it)."""
        self.prepare_state()
        if not self._environment_file().exists() or all(self.pid(n) is None for n in self.components):
            self.record_environment()  # a fresh start; one that completes a running stack keeps its settings
        for name in self.components:
            progress(name)
            self.start(name)
            started(name)

    def down(self) -> None:
        stop_supervisor(self.run_dir)  # or it would start again what is being stopped
        for name in reversed(list(self.components)):
            self.stop(name)

    def status(self) -> dict[str, dict[str, object]]:
        return {
            name: {
                "pid": self.pid(name),
                "healthy": comp.healthy() if self.pid(name) else False,
                "url": comp.url,
                "log": str(self.log_file(name)),
            }
            for name, comp in self.components.items()
        }

    def status_json(self) -> str:
        return json.dumps(self.status(), indent=2)


class TopologyMismatch(Exception):
    """The state directory was made for a stack of another shape."""


class ComponentFailed(Exception):
    """A component did not become healthy; carries its log tail."""

    def __init__(self, name: str, tail: str) -> None:
        super().__init__(f"{name} did not become healthy")
        self.name = name
        self.tail = tail


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _exited(pid: int) -> bool:
    """A process that has exited but is still listed (a zombie): ``kill(pid, 0)`` alone calls it alive."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no procfs: rely on kill(pid, 0)
    return stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"])


def _reap(pid: int) -> None:
    """Collect a child we started in this process, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
