"""Numeric verification work that the pure rules in ``gpudepin.core`` leave to the edges.

``hwproof`` derives a matrix-product challenge from a seed, solves it on the provider's
CPU or GPU, commits to the product row by row (a SHA-256 Merkle root), answers the
coordinator's spot queries and checks them with Freivalds' algorithm. The rules that size
the challenge and judge its timing live in ``gpudepin.core.hwproof``.
"""
