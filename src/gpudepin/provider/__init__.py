"""The provider agent.

``hardware`` detects what the machine honestly has; ``agent`` registers it, heartbeats,
long-polls the coordinator for tasks (nothing connects into a provider), runs each task
in a subprocess with a timeout, and uploads the result with a signed receipt.
"""
