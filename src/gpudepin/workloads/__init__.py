"""Workloads: one module per kind of work, each with the same shape.

A workload validates a job's parameters and input files (``validate``), splits the job
into tasks (``split``), runs one task on a provider (``run``), compares two results of
the same task (``compare``, for verification) and merges accepted results into the
job's output (``merge``). Buyers send data (scenes, models, specs), never code.
``registry.get(name)`` returns the workload for a job kind.
"""
