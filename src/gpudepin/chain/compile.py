"""Compile the Vyper contracts once and keep their ABI and bytecode next to them.

``build/<Name>.json`` holds the ABI, the bytecode, the vyper version and the SHA-256 of
the source it came from. A cached artifact is used as long as that hash matches the
source, so a node that only runs the contracts needs no compiler; editing a ``.vy``
file makes the next :func:`load_artifact` recompile it (with ``vyper`` installed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpudepin.core.errors import Unavailable

CONTRACTS_DIR = Path(__file__).with_name("contracts")
BUILD_DIR = Path(__file__).with_name("build")
CONTRACT_NAMES = ("Token", "Vault", "Stakes")


@dataclass(frozen=True)
class Artifact:
    """A compiled contract: what web3 needs to deploy and call it."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    source_sha256: str
    compiler: str


def _source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def compile_source(name: str, source: str) -> Artifact:
    """Compile one contract's source with vyper's Python API."""
    try:
        import vyper
    except ImportError as exc:
        raise Unavailable(
            f"contract {name} changed and vyper is not installed to recompile it",
            hint="pip install 'gpudepin[chain]', or restore the source that matches build/.",
        ) from exc
    out = vyper.compile_code(source, contract_path=f"{name}.vy", output_formats=["abi", "bytecode"])
    return Artifact(
        name, out["abi"], out["bytecode"], _source_hash(source), f"vyper {vyper.__version__}"
    )


def load_artifact(name: str, *, build_dir: Path = BUILD_DIR) -> Artifact:
    """The artifact for contract ``name``, recompiled and re-cached when its source changed."""
    source = (CONTRACTS_DIR / f"{name}.vy").read_text()
    digest = _source_hash(source)
    cached = build_dir / f"{name}.json"
    if cached.exists():
        data = json.loads(cached.read_text())
        if data.get("source_sha256") == digest:
            return Artifact(
                name, data["abi"], data["bytecode"], data["source_sha256"], data["compiler"]
            )
    artifact = compile_source(name, source)
    build_dir.mkdir(parents=True, exist_ok=True)
    body = {
        "name": artifact.name,
        "compiler": artifact.compiler,
        "source_sha256": artifact.source_sha256,
        "abi": artifact.abi,
        "bytecode": artifact.bytecode,
    }
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
    tmp.replace(cached)
    return artifact


def load_all(*, build_dir: Path = BUILD_DIR) -> dict[str, Artifact]:
    """Every contract's artifact by name."""
    return {name: load_artifact(name, build_dir=build_dir) for name in CONTRACT_NAMES}


if __name__ == "__main__":
    for art in load_all().values():
        print(f"{art.name}: {len(art.bytecode) // 2 - 1} bytes, {art.compiler}")
