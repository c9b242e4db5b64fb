"""gpudepin: an open, self-hostable GPU DePIN.

Layers (imports point towards ``core`` only): ``core`` (pure domain rules), ``workloads``
(render, inference, training engines), ``coordinator`` (HTTP API, persistence, loops),
``provider`` (the agent), ``client`` (SDK), ``cli`` (Typer commands).
"""

__version__ = "0.1.0"
API_VERSION = "1"
INLINE_RESULT_BYTES = 64 * 1024  # a result this small may travel inside its submission
