"""The ``gpudepin`` command line (Typer + Rich). ``main`` mounts the command groups:
``network`` (up, demo, coordinator, provider), ``jobs`` (submit, jobs), ``wallet``
(wallet, providers), ``economics``."""
