"""The Celery side of ``load.py``: the same tiny echo task, on a Redis broker.

Run by ``load.py`` as ``celery -A load_celery worker`` from this folder.
"""

from __future__ import annotations

import hashlib
import os

from celery import Celery

BROKER = os.environ.get("LOAD_REDIS", "redis://127.0.0.1:6379/0")
app = Celery("load_celery", broker=BROKER, backend=BROKER)
app.conf.update(task_serializer="json", result_serializer="json", worker_prefetch_multiplier=64)


@app.task
def echo(seed: int, index: int) -> str:
    """What an emulated provider does per task: build the expected bytes, hash them."""
    return hashlib.sha256(f"echo {seed} {index}\n".encode()).hexdigest()
