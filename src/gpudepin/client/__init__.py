"""The Python SDK of gpudepin (httpx). The CLI uses it; so can your own code.

from gpudepin.client import Client
with Client.local() as c:            # the network `gpudepin up` started
    job = c.submit_job("render", {"frames": "1-4"}, {"scene": "scene.blend"}, "0.01")
"""

from gpudepin.client.sdk import Client

__all__ = ["Client"]
