"""Artifact storage on providers' disks.

``erasure`` cuts an artifact into k-of-n shards with zfec (Reed-Solomon) and puts them
back together from any k, checking every shard's SHA-256 against the manifest recorded
at upload. Where the shards go and when they are repaired are rules of
``gpudepin.core.shards``; the coordinator's own blob store stays the home of small files.
"""
