"""The exception tree, re-exported from ``gpudepin.core.errors`` where it lives so that
the pure core can raise it too."""

from gpudepin.core.errors import *  # noqa: F403
from gpudepin.core.errors import ERRORS_BY_CODE, GpudepinError  # noqa: F401
