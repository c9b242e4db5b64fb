"""gpudepin: an open, self-hostable GPU DePIN.

Layers (imports point towards ``core`` only): ``core`` (pure domain rules), ``workloads``
(render, inference, training engines), ``coordinator`` (HTTP API, persistence, loops),
``provider`` (the agent), ``client`` (SDK), ``cli`` (Typer commands).
"""

__version__ = "0.1.0"
API_VERSION = "1"
INLINE_RESULT_BYTES = 64 * 1024  # a result this small may travel inside its submission
# The coordinator keeps an idle connection this long; agents keep theirs a little less, so
# the client, not the server, closes one and never sends a request into a closing socket
SERVER_KEEPALIVE_S = 75
CLIENT_KEEPALIVE_S = 60
