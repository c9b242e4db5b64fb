"""The catalog of trainable models: an MLP, a small CNN and a tiny byte-level transformer.

Kept apart from ``training`` because defining ``nn.Module`` classes needs torch at import
time; ``training`` imports this module only when a job actually trains. No model uses
dropout or any other randomness after initialisation, so a step depends only on the
state before it and the batch, which is what lets any segment be replayed.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional

BYTE_VOCAB = 256


class MLP(nn.Module):
    """Fully connected classifier over flattened features."""

    def __init__(self, in_features: int, hidden: list[int], classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


class SmallCNN(nn.Module):
    """3x3 convolutions, one 2x2 max-pool, then a linear head (sized for 8x8 digits)."""

    def __init__(
        self, in_channels: int, height: int, width: int, channels: list[int], classes: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        depth = in_channels
        for size in channels:
            layers += [nn.Conv2d(depth, size, kernel_size=3, padding=1), nn.ReLU()]
            depth = size
        layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(depth * (height // 2) * (width // 2), classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))  # type: ignore[no-any-return]


class CausalSelfAttention(nn.Module):
    """Multi-head attention that lets each position see only itself and earlier ones."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        shape = (batch, length, self.heads, width // self.heads)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(width // self.heads)
        future = torch.ones(length, length, dtype=torch.bool).triu(1)
        weights = functional.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
        mixed = (weights @ v).transpose(1, 2).reshape(batch, length, width)
        return self.proj(mixed)  # type: ignore[no-any-return]


class Block(nn.Module):
    """Pre-norm transformer block: attention then a 4x feed-forward, both residual."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.ff(self.ln2(x))  # type: ignore[no-any-return]


class TinyLM(nn.Module):
    """Byte-level language model: predicts the next byte at every position."""

    def __init__(self, d_model: int, layers: int, heads: int, context: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(BYTE_VOCAB, d_model)
        self.positions = nn.Embedding(context, d_model)
        self.blocks = nn.Sequential(*(Block(d_model, heads) for _ in range(layers)))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, BYTE_VOCAB)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(idx.shape[1])
        x = self.tokens(idx) + self.positions(positions)
        return self.head(self.ln_f(self.blocks(x)))  # type: ignore[no-any-return]


def build(model: dict[str, Any], dataset: dict[str, Any]) -> nn.Module:
    """The module a normalised spec describes (weights drawn from torch's current RNG)."""
    name = model["name"]
    if name == "mlp":
        return MLP(math.prod(dataset["feature_shape"]), model["hidden"], dataset["classes"])
    if name == "cnn":
        channels_in, height, width = dataset["feature_shape"]
        return SmallCNN(channels_in, height, width, model["channels"], dataset["classes"])
    if name == "transformer_lm":
        return TinyLM(model["d_model"], model["layers"], model["heads"], model["context"])
    raise ValueError(f"unknown model {name!r}")  # validate() has refused it already


def loss(module: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the module's predictions (per token for the language model)."""
    logits = module(x)
    if name == "transformer_lm":
        return functional.cross_entropy(logits.reshape(-1, BYTE_VOCAB), y.reshape(-1))
    return functional.cross_entropy(logits, y)
