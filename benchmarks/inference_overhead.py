"""Batch inference and hosted endpoints: the same work directly and through the network.

Batch: a ~1 minute job (an ONNX MLP over random rows, or embeddings of generated
sentences) run three ways, each with the same intra-op thread count:

* ``direct``: one ONNX Runtime session (or one ``encode`` call) over every row;
* ``workload``: the workload's validate/split/run/merge in this process, no network;
* ``through_network``: submitted to a local network (one agent) and fetched back.

Endpoint: per-request latency of ``Server.invoke`` directly, and through the gateway of a
lease serving embeddings on a local network.

    python3 benchmarks/inference_overhead.py --mode onnx              # 15 s job
    python3 benchmarks/inference_overhead.py --mode onnx --seconds 60
    python3 benchmarks/inference_overhead.py --mode embeddings --seconds 60
    python3 benchmarks/inference_overhead.py --quick          # a few seconds, for CI
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from gpudepin.workloads.base import RunContext
from gpudepin.workloads.inference import WORKLOAD, embed, onnx_session, run_onnx
from gpudepin.workloads.serving import Server, load_server

THREADS = 1
WIDTH = 1024


def make_mlp(path: Path, width: int = WIDTH, layers: int = 4) -> Path:
    """An ONNX MLP of ``layers`` MatMul+Relu blocks, ``width`` wide, dynamic batch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, current = [], [], "x"
    for i in range(layers):
        weight = (rng.normal(size=(width, width)) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"W{i}"))
        nodes.append(helper.make_node("MatMul", [current, f"W{i}"], [f"h{i}"]))
        nodes.append(helper.make_node("Relu", [f"h{i}"], [f"r{i}"]))
        current = f"r{i}"
    nodes.append(helper.make_node("Identity", [current], ["y"]))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def sentences(count: int) -> list[str]:
    """Varied, reproducible sentences of 6 to 30 words."""
    words = [
        "gpu",
        "provider",
        "lease",
        "render",
        "frame",
        "token",
        "stake",
        "verify",
        "audit",
        "network",
        "buyer",
        "job",
        "task",
        "model",
        "batch",
        "queue",
        "price",
        "second",
        "hour",
        "card",
        "memory",
        "cluster",
        "region",
        "epoch",
        "ledger",
    ]
    rng = np.random.default_rng(1)
    return [" ".join(rng.choice(words, size=rng.integers(6, 31))) for _ in range(count)]


def through_network(
    params: dict[str, Any], inputs: dict[str, Path], root: Path
) -> tuple[Path, float]:
    """Submit the job to a local network (one agent, 1 thread), wait, download the merged
    output. Returns it and the wall seconds from submit (uploads included) to download;
    starting the network and the agent is not counted."""
    from _ai_network import local_network, run_job

    with local_network(root / "batch") as (_, buyer):
        started = time.perf_counter()
        (out,) = run_job(buyer, "infer", params, inputs, root / "net-out")
        return out, time.perf_counter() - started


def through_gateway(
    server_kind: str, payload: dict[str, Any], requests: int, root: Path
) -> tuple[list[float], dict[str, Any]]:
    """Per-request seconds of ``POST /v1/leases/{id}/invoke`` on a lease serving
    ``server_kind`` over loopback (one agent; the SDK keeps its connection open), and the
    endpoint's figures as the coordinator measured them (its relay overhead included)."""
    from _ai_network import local_network, serving_lease

    with local_network(root / "gateway", market=True) as (_, buyer):
        lease_id = serving_lease(buyer, f"serve:{server_kind}")
        for _ in range(5):  # first calls warm the connection and the model
            buyer.lease_invoke(lease_id, payload)
        latencies = []
        for _ in range(requests):
            started = time.perf_counter()
            buyer.lease_invoke(lease_id, payload)
            latencies.append(time.perf_counter() - started)
        return latencies, buyer.lease_endpoint(lease_id)


def relay_only(requests: int, root: Path) -> None:
    """The gateway's own cost: invoke round trips to a lease whose 'agent' (a thread here)
    answers at once, against plain round trips to the coordinator (``GET /v1/health``),
    which is what calling a provider directly would cost. No model, so no compute noise."""
    import threading

    from eth_account import Account

    from gpudepin.cli.localnet import LocalNetwork
    from gpudepin.client import Client

    net = LocalNetwork(root / "relay", providers=0, port=0, extra_coordinator_args=["--no-audits"])
    net.start()
    try:
        prov, buyer = Client(net.api_url, Account.create()), Client(net.api_url, Account.create())
        prov.register_provider("relay", "local", "op", {"gpu_class": "cpu", "cores": 2}, "bench")
        buyer.faucet("100")
        prov.post_ask("lease", 10**13, 1, time.time() + 600)
        lease_id = buyer.create_lease("cpu", 3600, "100", workload="serve:embeddings")["id"]
        prov.start_lease(lease_id)
        stop = threading.Event()

        def answer() -> None:
            started, beat = time.time(), 0.0
            while not stop.is_set():
                if time.monotonic() - beat > 1:
                    prov.lease_receipt(lease_id, int(time.time() - started), time.time())
                    beat = time.monotonic()
                for r in prov.lease_requests(lease_id, 0.5)["requests"]:
                    prov.lease_respond(lease_id, r["id"], {"ok": True}, compute_ms=0.0)

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        while not buyer.lease_endpoint(lease_id)["ready"]:
            time.sleep(0.1)
        relay, plain = [], []
        for _ in range(requests + 10):  # the first 10 warm connections and caches
            started = time.perf_counter()
            buyer.lease_invoke(lease_id, {"input": "x"})
            relay.append(time.perf_counter() - started)
            started = time.perf_counter()
            buyer.health()
            plain.append(time.perf_counter() - started)
        stop.set()
        thread.join(5)
        r = statistics.quantiles(relay[10:], n=100)
        h = statistics.quantiles(plain[10:], n=100)
        print(
            f"relay round trip, instant answer, {requests} requests: p50 {r[49] * 1e3:.2f} ms, "
            f"p99 {r[98] * 1e3:.2f} ms; plain round trip p50 {h[49] * 1e3:.2f} ms, "
            f"p99 {h[98] * 1e3:.2f} ms; gateway adds p50 {(r[49] - h[49]) * 1e3:.2f} ms, "
            f"p99 {(r[98] - h[98]) * 1e3:.2f} ms"
        )
    finally:
        net.stop()


def _timed(label: str, seconds: float, base: float | None) -> None:
    ratio = f"  ratio {seconds / base:.3f}" if base else ""
    print(f"{label:<34} {seconds:8.2f} s{ratio}")


def batch(mode: str, target_s: float, root: Path, network: bool = True) -> None:
    if mode == "onnx":
        model = make_mlp(root / "mlp.onnx")
        session = onnx_session(model, "cpu", THREADS)
        probe = np.random.default_rng(2).normal(size=(2048, WIDTH)).astype(np.float32)
        started = time.perf_counter()
        run_onnx(session, {"x": probe})
        rate = len(probe) / (time.perf_counter() - started)
        rows = max(2048, int(rate * target_s))
        x = np.random.default_rng(3).normal(size=(rows, WIDTH)).astype(np.float32)
        np.save(root / "x.npy", x)
        params: dict[str, Any] = {"model": "onnx", "batch_size": max(1, rows // 8)}
        inputs = {"model": model, "inputs": root / "x.npy"}
        started = time.perf_counter()
        expected = run_onnx(session, {"x": x})["y"]
        direct_s = time.perf_counter() - started
        print(f"onnx MLP {WIDTH}x4, {rows} rows, {THREADS} thread(s)")
    else:
        embed("all-minilm-l6-v2", ["warm up"])  # the load is not part of either run
        probe = sentences(512)
        started = time.perf_counter()
        embed("all-minilm-l6-v2", probe)
        rate = len(probe) / (time.perf_counter() - started)
        rows = max(512, int(rate * target_s))
        texts = sentences(rows)
        (root / "texts.txt").write_text("\n".join(texts), "utf-8")
        params = {"model": "all-minilm-l6-v2", "batch_size": max(1, rows // 8)}
        inputs = {"texts": root / "texts.txt"}
        started = time.perf_counter()
        expected = embed("all-minilm-l6-v2", texts)
        direct_s = time.perf_counter() - started
        print(f"embeddings all-minilm-l6-v2, {rows} texts, {THREADS} thread(s)")

    started = time.perf_counter()
    spec = WORKLOAD.validate(params, inputs)
    results = [
        (plan, WORKLOAD.run(spec, plan.spec, inputs, RunContext(root / f"t{i}", threads=THREADS)))
        for i, plan in enumerate(WORKLOAD.split(spec))
    ]
    (merged,) = WORKLOAD.merge(spec, results, root / "out")
    workload_s = time.perf_counter() - started
    got = np.load(merged) if mode != "onnx" else np.load(merged)["y"]
    _timed("direct", direct_s, None)
    _timed(f"workload, {len(results)} tasks, no network", workload_s, direct_s)
    print(f"max abs diff vs direct: {float(np.max(np.abs(got - expected))):.3g}")
    if not network:
        return
    out, network_s = through_network(params, inputs, root)
    _timed("through the network, 1 agent", network_s, direct_s)
    net_got = np.load(out) if mode != "onnx" else np.load(out)["y"]
    print(f"max abs diff network vs direct: {float(np.max(np.abs(net_got - expected))):.3g}")


def endpoint(requests: int, root: Path) -> None:
    import torch

    torch.set_num_threads(THREADS)  # as the serving agent does
    server: Server = load_server("embeddings")
    payload = {"input": "how long does a lease take to start?"}
    server.invoke(payload)
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        server.invoke(payload)
        latencies.append(time.perf_counter() - started)
    q = statistics.quantiles(latencies, n=100)
    print(
        f"endpoint direct invoke, {requests} requests: p50 {q[49] * 1e3:.2f} ms, "
        f"p99 {q[98] * 1e3:.2f} ms"
    )
    through, figures = through_gateway("embeddings", payload, requests, root)
    g = statistics.quantiles(through, n=100)
    print(
        f"through the gateway (client-side): p50 {g[49] * 1e3:.2f} ms, p99 {g[98] * 1e3:.2f} ms;"
        f" added vs direct: p50 {(g[49] - q[49]) * 1e3:.2f} ms, p99 {(g[98] - q[98]) * 1e3:.2f} ms"
    )
    relay = figures["gateway_overhead_ms"]
    print(
        f"gateway relay overhead (coordinator-side, answer time minus the agent's compute): "
        f"p50 {relay['p50']:.2f} ms, p99 {relay['p99']:.2f} ms over {figures['requests']} requests"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("onnx", "embeddings"), default="onnx")
    parser.add_argument(
        "--seconds", type=float, default=15.0, help="length of the direct run (60: the target's)"
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="3 s batch, 50 requests")
    parser.add_argument("--no-endpoint", action="store_true", help="skip the endpoint part")
    parser.add_argument("--no-network", action="store_true", help="only the local runs")
    args = parser.parse_args()
    seconds, requests = (3.0, 50) if args.quick else (args.seconds, args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        batch(args.mode, seconds, Path(tmp), network=not args.no_network)
        if not args.no_endpoint:
            relay_only(requests, Path(tmp))
            endpoint(requests, Path(tmp))


if __name__ == "__main__":
    main()
