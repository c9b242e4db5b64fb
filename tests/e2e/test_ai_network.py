"""Real processes: AI work through a local network (coordinator and agents on this machine).

Batch inference split across two agents equals a direct ONNX Runtime run; a training job
whose provider is killed resumes on the other one from its last uploaded checkpoint, with
every commitment reproduced by a direct run; a lease serves embeddings to the ``openai``
client through the coordinator's gateway, and fails clearly when its provider dies.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from gpudepin.cli.localnet import LocalNetwork
from gpudepin.client import Client
from gpudepin.core.errors import Unavailable
from gpudepin.identity import load_or_create_key
from gpudepin.workloads import training
from gpudepin.workloads.base import RunContext
from gpudepin.workloads.inference import embed, make_demo_onnx, onnx_session, run_onnx

pytestmark = pytest.mark.e2e


def wait_for(what: str, check: Callable[[], bool], timeout: float = 120.0) -> None:
    """Poll a condition of the live system until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def posted_price(tmp_path: Path) -> Iterator[LocalNetwork]:
    """A network without auctions: any online agent takes the next task."""
    net = LocalNetwork(
        tmp_path / "net", providers=0, port=0, assignment_ttl_s=4.0,
        extra_coordinator_args=["--no-market", "--no-audits"],
    )  # fmt: skip
    net.start()
    try:
        yield net
    finally:
        net.stop()


def buyer_of(net: LocalNetwork) -> Client:
    client = Client(net.api_url, load_or_create_key(net.home, "buyer"))
    client.faucet("100")
    return client


def online(client: Client) -> int:
    return sum(p["online"] for p in client.providers())


def test_batch_inference_split_across_two_agents_equals_a_direct_run(
    posted_price: LocalNetwork, tmp_path: Path
) -> None:
    for i in (1, 2):
        posted_price.start_provider(i)
    buyer = buyer_of(posted_price)
    wait_for("two providers", lambda: online(buyer) == 2)
    model = make_demo_onnx(tmp_path / "model.onnx")
    x = np.random.default_rng(9).normal(size=(16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    job = buyer.submit_job(
        "infer",
        {"model": "onnx", "batch_size": 4},
        {"model": model, "inputs": tmp_path / "x.npy"},
        "0.1",
    )
    wait_for("the job to end", lambda: buyer.job(job["id"])["state"] in ("completed", "failed"))
    done = buyer.job(job["id"])
    assert done["state"] == "completed", done["reason"]
    assert len({t["provider"] for t in done["tasks"]}) == 2, "one agent ran every task"
    (out,) = buyer.download_outputs(job["id"], tmp_path / "out")
    with np.load(out) as got:
        assert np.array_equal(got["y"], run_onnx(onnx_session(model), {"x": x})["y"])


def test_embeddings_of_a_text_file_through_two_tasks_match_the_model(
    posted_price: LocalNetwork, tmp_path: Path
) -> None:
    posted_price.start_provider(1)
    buyer = buyer_of(posted_price)
    wait_for("a provider", lambda: online(buyer) == 1)
    texts = [f"text number {i} about GPUs and leases" for i in range(24)]
    (tmp_path / "texts.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts))
    job = buyer.submit_job(
        "infer",
        {"model": "all-minilm-l6-v2", "batch_size": 12},
        {"texts": tmp_path / "texts.jsonl"},
        "0.1",
    )
    wait_for("the job to end", lambda: buyer.job(job["id"])["state"] in ("completed", "failed"))
    done = buyer.job(job["id"])
    assert done["state"] == "completed", done["reason"]
    (out,) = buyer.download_outputs(job["id"], tmp_path / "out")
    got = np.load(out)
    assert got.shape == (24, 384)
    import torch

    torch.set_num_threads(1)  # the test shares 2 cores with the network
    assert np.allclose(got, embed("all-minilm-l6-v2", texts), atol=1e-5)


def test_training_resumes_on_another_provider_and_its_commitments_reproduce(
    posted_price: LocalNetwork, tmp_path: Path
) -> None:
    posted_price.start_provider(1)
    buyer = buyer_of(posted_price)
    wait_for("a provider", lambda: online(buyer) == 1)
    spec_path = tmp_path / "spec.toml"
    # long enough that the kill lands mid-run on a fast machine too: 2,000 steps ran in
    # under a second there, between two of the agent's progress uploads (every 1 s)
    spec_path.write_text(training.demo_spec("mlp", steps=20000, checkpoint_interval=2000))
    data = training.make_digits_npz(tmp_path / "digits.npz")
    job = buyer.submit_job("train", {}, {"spec": spec_path, "dataset": data}, "1")

    def step() -> int:
        tasks = buyer.job_progress(job["id"])["tasks"]
        return int(tasks[0]["step"]) if tasks else 0

    wait_for("a first checkpoint uploaded", lambda: step() >= 2000)
    assert buyer.job(job["id"])["tasks"][0]["state"] == "assigned", "it finished before the kill"
    posted_price.kill("provider-1")
    killed_at = step()
    posted_price.start_provider(2)
    wait_for("the job to end", lambda: buyer.job(job["id"])["state"] in ("completed", "failed"))
    done = buyer.job(job["id"])
    assert done["state"] == "completed", done["reason"]
    assert done["tasks"][0]["attempts"] == 2
    files = {p.name: p for p in buyer.download_outputs(job["id"], tmp_path / "out")}
    import zipfile

    with zipfile.ZipFile(files["training.zip"]) as packed:
        resumed_from = json.loads(packed.read("losses.json"))["start_step"]
    assert resumed_from >= killed_at > 0  # not from step 0
    direct = training.WORKLOAD.run(
        done["spec"], {"start_step": 0, "end_step": 20000}, {"dataset": data},
        RunContext(tmp_path / "direct"),
    )  # fmt: skip
    expected = training.read_result(direct)["commitments"]
    assert json.loads(files["commitments.json"].read_text()) == expected
    assert len(expected) == 11


@pytest.fixture
def market(tmp_path: Path) -> Iterator[LocalNetwork]:
    """A network with auctions (leases need them) and quick bill-stop."""
    net = LocalNetwork(
        tmp_path / "net", providers=0, port=0, assignment_ttl_s=4.0, bid_window_s=3.0,
        lease_grace_s=4.0, extra_coordinator_args=["--no-audits", "--gateway-stale", "3"],
    )  # fmt: skip
    net.start()
    try:
        yield net
    finally:
        net.stop()


def test_a_lease_serves_embeddings_to_the_openai_client_until_its_provider_dies(
    market: LocalNetwork,
) -> None:
    import openai
    import torch

    market.start_provider(1)
    buyer = buyer_of(market)
    wait_for("a provider", lambda: online(buyer) == 1)
    lease = buyer.create_lease(None, 600, "100", workload="serve:embeddings")
    lease_id = lease["id"]
    wait_for("the lease to start", lambda: buyer.lease(lease_id)["state"] == "active", 60)
    wait_for("the model to load", lambda: buyer.lease_endpoint(lease_id)["ready"], 60)
    oa = openai.OpenAI(
        base_url=buyer.lease_openai_base_url(lease_id), api_key=buyer.session_token()
    )
    texts = [f"request {i}: how long does a lease take to start?" for i in range(100)]
    got = [oa.embeddings.create(model="all-minilm-l6-v2", input=t) for t in texts]
    vectors = np.array([r.data[0].embedding for r in got], dtype=np.float32)
    assert vectors.shape == (100, 384)
    sample = [0, 37, 99]
    torch.set_num_threads(1)  # the test shares 2 cores with the network
    assert np.allclose(vectors[sample], embed("all-minilm-l6-v2", [texts[i] for i in sample]),
                       atol=1e-5)  # fmt: skip
    assert got[0].usage.prompt_tokens > 0
    stats = buyer.lease_endpoint(lease_id)
    assert stats["requests"] == 100 and stats["errors"] == 0
    assert 0 < stats["latency_ms"]["p50"] <= stats["latency_ms"]["p99"]

    market.kill("provider-1")
    with pytest.raises(Unavailable, match="not answering"):
        for _ in range(100):  # answered until the gateway notices the silence
            buyer.lease_invoke(lease_id, {"input": "still there?"})
    wait_for("billing to stop", lambda: buyer.lease(lease_id)["state"] != "active", 30)
    billed = buyer.lease(lease_id)["lease"]["billed_seconds"]
    assert billed > 0
    with pytest.raises(Unavailable):
        buyer.lease_invoke(lease_id, {"input": "after the end"})
    assert buyer.lease(lease_id)["lease"]["billed_seconds"] == billed
