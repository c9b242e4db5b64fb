"""Fuzz every route of the OpenAPI spec in-process: no input may cause a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from eth_account import Account
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from gpudepin.coordinator.app import create_app
from gpudepin.identity import sign_text
from gpudepin.settings import CoordinatorSettings

TOKEN: dict[str, str] = {}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    home: Path = tmp_path_factory.mktemp("fuzz")
    app = create_app(CoordinatorSettings(home=home, max_upload_bytes=100_000), run_loops=False)
    with TestClient(app) as tc:
        # a signed-in provider with funds, so authenticated routes get past the door
        acct = Account.create()
        msg = tc.post("/v1/auth/challenge", json={"address": acct.address}).json()["message"]
        login = tc.post("/v1/auth/login", json={"message": msg, "signature": sign_text(acct, msg)})
        TOKEN["bearer"] = login.json()["token"]
        auth = {"Authorization": f"Bearer {TOKEN['bearer']}"}
        tc.post("/v1/wallet/faucet", json={"amount": "100"}, headers=auth)
        hw = {"name": "fz", "region": "eu-west", "hardware": {"gpu_class": "cpu"}}
        tc.post("/v1/providers/register", json=hw, headers=auth)
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_input_causes_a_server_error(case: Any) -> None:
    headers = {"Authorization": f"Bearer {TOKEN['bearer']}"}
    if case.path == "/v1/providers/poll":
        case.query = {"wait": 0}  # a long poll only waits; it proves nothing here
    response = case.call(headers=headers)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
