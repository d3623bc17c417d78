"""Access-decision latency: in-process (``opa bench``) and over OPA's REST API.

    .venv/bin/python bench/policy_bench.py [--n 2000] [--input policies/examples/X/input.json]

1. In-process: ``opa bench`` evaluates ``data.healthgov.access.decision`` on the input
   repeatedly inside one OPA process and reports ns/op (no HTTP, no JSON on the wire).
2. REST: starts ``opa run --server`` on a free 127.0.0.1 port with ``policies/`` and the
   demo registry (the way the platform runs it), then sends N sequential
   ``POST /v1/data/healthgov/access/decision`` with one keep-alive httpx client, as the
   records service does, and reports p50/p99 latency and requests per second.
   The server is stopped afterwards.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
POLICIES = REPO / "policies"
REGISTRY = REPO / "deploy" / "demo" / "registry.json"
DEFAULT_INPUT = POLICIES / "examples" / "clinician_treat" / "input.json"
QUERY = "data.healthgov.access.decision"
DECISION_URL_PATH = "/v1/data/healthgov/access/decision"


def opa_binary() -> str:
    """The repository's pinned OPA, else ``opa`` on PATH."""
    local = REPO / ".cache" / "bin" / "opa"
    if local.exists():
        return str(local)
    found = shutil.which("opa")
    if found is None:
        sys.exit("opa not found: install it into .cache/bin (deploy setup) or on PATH")
    return found


def load_input(path: Path) -> dict[str, Any]:
    """The bare OPA input (example files wrap it as the REST body ``{"input": ...}``)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(doc, dict) and set(doc) == {"input"}:
        return dict(doc["input"])
    return dict(doc)


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def bench_in_process(opa: str, policy_input: dict[str, Any]) -> dict[str, float]:
    """Run ``opa bench`` on the decision; return ns/op and the median eval time."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(policy_input, fh)
        input_file = fh.name
    try:
        proc = subprocess.run(
            [opa, "bench", "--format", "json", "--data", str(POLICIES),
             "--data", f"healthgov.registry:{REGISTRY}", "--input", input_file, QUERY],
            capture_output=True, text=True, timeout=300, check=False,
        )
    finally:
        os.unlink(input_file)
    if proc.returncode != 0:
        sys.exit(f"opa bench failed:\n{proc.stdout}{proc.stderr}")
    result = json.loads(proc.stdout)
    extra = result.get("Extra", {})
    return {
        "iterations": float(result["N"]),
        "ns_per_op": result["T"] / result["N"],
        "eval_median_ns": float(extra.get("histogram_timer_rego_query_eval_ns_median", 0.0)),
        "allocs_per_op": result.get("MemAllocs", 0) / result["N"],
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Block until OPA answers /health, or exit if it died or never answered."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"opa exited with {proc.returncode} before becoming healthy")
        try:
            if httpx.get(f"{base}/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    sys.exit("opa did not become healthy in time")


def bench_rest(opa: str, policy_input: dict[str, Any], n: int,
               warmup: int = 100) -> dict[str, Any]:
    """Start OPA on a spare port, time ``n`` sequential decision POSTs, stop OPA."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [opa, "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error",
         "--skip-version-check", str(POLICIES), f"healthgov.registry:{REGISTRY}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "GOGC": "400"},  # as the platform starts it (services/cli/stack.py)
    )
    try:
        wait_healthy(base, proc)
        body = json.dumps({"input": policy_input}).encode()
        headers = {"content-type": "application/json"}
        with httpx.Client(base_url=base, timeout=5.0) as client:
            first = client.post(DECISION_URL_PATH, content=body, headers=headers).json()
            decision = first.get("result")
            if not isinstance(decision, dict) or "policy_version" not in decision:
                sys.exit(f"server returned no decision: {first}")
            for _ in range(warmup):
                client.post(DECISION_URL_PATH, content=body, headers=headers)
            latencies_ms: list[float] = []
            started = time.perf_counter()
            for _ in range(n):
                t0 = time.perf_counter()
                response = client.post(DECISION_URL_PATH, content=body, headers=headers)
                latencies_ms.append((time.perf_counter() - t0) * 1000)
                response.raise_for_status()
            elapsed = time.perf_counter() - started
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    latencies_ms.sort()
    return {
        "n": float(n),
        "p50_ms": percentile(latencies_ms, 50),
        "p99_ms": percentile(latencies_ms, 99),
        "max_ms": latencies_ms[-1],
        "req_per_s": n / elapsed,
        "allow": decision.get("allow") is True,
        "policy_version": decision["policy_version"],
    }


def main() -> None:
    """Run both benchmarks and print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="REST requests (default 2000)")
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT,
                        help="OPA input, bare or {'input': ...}")
    args = parser.parse_args()

    opa = opa_binary()
    policy_input = load_input(args.input)
    shown = args.input.resolve()
    print(f"input: {shown.relative_to(REPO) if shown.is_relative_to(REPO) else shown}")
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    inproc = bench_in_process(opa, policy_input)
    print("\nin-process (opa bench)")
    print(f"  iterations        {inproc['iterations']:.0f}")
    print(f"  ns/op             {inproc['ns_per_op']:,.0f}  ({inproc['ns_per_op'] / 1e6:.3f} ms)")
    print(f"  eval median       {inproc['eval_median_ns']:,.0f} ns")
    print(f"  allocs/op         {inproc['allocs_per_op']:,.0f}")

    rest = bench_rest(opa, policy_input, args.n)
    print(f"\nREST (opa run --server, {args.n} sequential POSTs, keep-alive httpx)")
    print(f"  decision          {'ALLOW' if rest['allow'] else 'DENY'}, "
          f"policy_version {rest['policy_version']}")
    print(f"  p50               {rest['p50_ms']:.3f} ms")
    print(f"  p99               {rest['p99_ms']:.3f} ms")
    print(f"  max               {rest['max_ms']:.3f} ms")
    print(f"  throughput        {rest['req_per_s']:,.0f} req/s")


if __name__ == "__main__":
    main()
