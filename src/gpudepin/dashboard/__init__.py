"""The public view of network health, computed from the coordinator's own books.

``figures`` computes every number (headline figures, daily series, the viability
``NetworkFigures``) from the ledger, the event log and the job, task and provider tables,
reading the optional market, lease, verification and chain tables when they exist.
``history`` samples the headline figures so the page can say "now vs 24 h ago" and draw
utilization over time. ``pages`` serves the HTML (``/``, job, lease and provider pages),
``charts`` draws inline SVG, and ``metrics`` exposes the same figures to Prometheus.
"""
