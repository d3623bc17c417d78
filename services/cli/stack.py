"""Start, stop and inspect the local platform: Kafka, OPA, the five services (and, in dev, a witness).

Each component is a background process with a pid file and a log file in the
state directory. ``up`` waits until every health check passes; if one fails it
stops, prints that component's log tail and exits non-zero.
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
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.adapters.auth import load_registry
from services.adapters.config import REPO_ROOT, PlatformSettings
from services.adapters.keys import PlatformKeys
from services.contracts.topics import LARGEST_MESSAGE_BYTES

SERVICES = ("portal", "ingest", "records", "audit", "oversight")


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


class Stack:
    """The platform's processes, rooted at one state directory."""

    def __init__(self, settings: PlatformSettings | None = None) -> None:
        self.settings = settings or PlatformSettings()
        self.state = self.settings.state_dir
        self.run_dir = self.state / "run"
        self.log_dir = self.state / "logs"
        self.components = {c.name: c for c in self._components()}

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

    def _kafka_prepare(self) -> None:
        kdir = self.state / "kafka"
        data = kdir / "data"
        kdir.mkdir(parents=True, exist_ok=True)
        broker = f"127.0.0.1:{self.settings.port('kafka')}"
        controller = f"127.0.0.1:{self.settings.port('kafka-controller')}"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": controller,
            "listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(data),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            # Topics carry their own max.message.bytes (services/contracts/topics.py); this is the default for
            # any other. A follower (and the broker's own fetches) must fetch the largest record any topic holds.
            "message.max.bytes": "10485760",
            "replica.fetch.max.bytes": str(LARGEST_MESSAGE_BYTES),
            "replica.fetch.response.max.bytes": str(max(LARGEST_MESSAGE_BYTES, 10 * 1024 * 1024)),
        }
        (kdir / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        if not (data / "meta.properties").exists():
            cluster_id = ""
            while not cluster_id or cluster_id.startswith("-"):
                cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            subprocess.run(
                [
                    "java", "-cp", self._kafka_libs(), "kafka.tools.StorageTool", "format",
                    "-t", cluster_id, "-c", str(kdir / "server.properties"), "--standalone",
                ],
                check=True, capture_output=True, text=True,
            )

    def _kafka_argv(self) -> list[str]:
        kdir = self.state / "kafka"
        return [
            # Regions of 16 MiB: ingest's messages (up to a few MiB) are then ordinary young objects, not
            # "humongous" ones allocated straight into the old generation (with the default 1 MiB regions
            # the broker ran a concurrent marking cycle every few seconds under ingest load).
            "java", "-Xms1g", "-Xmx1g", "-XX:+UseG1GC", "-XX:G1HeapRegionSize=16m", "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={REPO_ROOT / 'deploy' / 'kafka' / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp", self._kafka_libs(), "kafka.Kafka", str(kdir / "server.properties"),
        ]

    def _kafka_healthy(self) -> bool:
        if not _port_open(self.settings.port("kafka")):
            return False
        try:
            from kafka.admin import KafkaAdminClient

            admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap,
                                     request_timeout_ms=3000)
            admin.list_topics()
            admin.close()
            return True
        except Exception:
            return False

    def _kafka_topics(self) -> None:
        from services.adapters.kafka import ensure_topics

        ensure_topics(self.settings.kafka_bootstrap)

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
                name="kafka", argv=[], healthy=self._kafka_healthy, url=s.kafka_bootstrap,
                prepare=self._kafka_prepare, after_start=self._kafka_topics,
            ),
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
            ),
        ]
        if s.dev_mode:
            # The local SMTP sink the portal e-mails notices to (services/cli/mailsink.py); production uses a relay.
            comps.append(Component(
                name="mail",
                argv=[sys.executable, "-m", "services.cli.mailsink", "--port", str(s.port("mail")),
                      "--maildir", str(self.maildir)],
                healthy=lambda: _port_open(s.port("mail")), url=f"smtp://127.0.0.1:{s.port('mail')}",
            ))
        for name in SERVICES:
            port = s.port(name)
            comps.append(
                Component(
                    name=name,
                    argv=[
                        sys.executable, "-m", "uvicorn", f"services.{name}.app:create_app",
                        "--factory", "--host", "127.0.0.1", "--port", str(port),
                        "--log-level", "warning", "--no-access-log",
                    ],
                    healthy=lambda port=port: _http_ok(f"http://127.0.0.1:{port}/healthz"),
                    url=f"http://127.0.0.1:{port}",
                    # One instance of each: a restart takes over its own transactions and partitions.
                    env={"HEALTHGOV_INSTANCE": "0"},
                )
            )
        if s.dev_mode:
            # A demo witness with the platform's own witness key, so that a local log is witnessed
            # from the start. In production a witness is an independent party running elsewhere.
            comps.append(Component(
                name="witness",
                argv=[sys.executable, "-m", "services.cli.main", "audit", "witness", "--interval", "5"],
                healthy=self._witness_started, url=f"cosigns {s.audit_url}", prepare=self._witness_mark,
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

    def start(self, name: str, timeout_s: float = 90) -> None:
        """Start one component and wait for its health check; raise with its log tail."""
        comp = self.components[name]
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
            if comp.healthy():
                comp.after_start()
                return
            time.sleep(0.3)
        raise ComponentFailed(name, self.log_tail(name))

    def _launch(self, name: str, comp: Component) -> None:
        self._end_leftovers(name)
        comp.prepare()
        argv = self._kafka_argv() if name == "kafka" else list(comp.argv)
        if argv and argv[0] == "@opa":
            argv[0] = self._opa_binary()
        log = open(self.log_file(name), "ab")  # noqa: SIM115 - handed to the child
        env = {**os.environ, "HEALTHGOV_STATE_DIR": str(self.state), **comp.env}
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT, env=env, start_new_session=True,
        )
        self._pidfile(name).write_text(str(proc.pid))

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

    def up(self, progress: Callable[[str], None] = lambda _n: None) -> None:
        self.prepare_state()
        for name in self.components:
            progress(name)
            self.start(name)

    def down(self) -> None:
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
