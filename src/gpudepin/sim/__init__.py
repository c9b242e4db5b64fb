"""The discrete-event simulator: a network of thousands of providers with churn, diurnal
demand and cheaters, run on the same ``gpudepin.core`` rules as the coordinator.

``engine`` holds the event loop and the run's parameters and result; ``report`` turns a
result into figures, a viability ``NetworkFigures``, PNG charts and a Markdown report.
"""
