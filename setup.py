"""The one thing pyproject.toml cannot say stably: the optional C extension.

The book simulator's requote walk in C (docs/simulator.md, "Speed"). ``optional=True``: without
a C compiler the install still succeeds and the simulator takes its numpy path (same outputs).
Everything else about the package is in pyproject.toml.
"""

import hashlib
from pathlib import Path

from setuptools import Extension, setup

SOURCE = "soakq/metrics/book/_requote.c"
# The build records the source it was made from: an editable checkout whose source changed
# since is told apart from a fresh build (soakq.metrics.book.quotes._compiled).
DIGEST = hashlib.sha256((Path(__file__).parent / SOURCE).read_bytes()).hexdigest()

setup(
    ext_modules=[
        Extension(
            "soakq.metrics.book._requote",
            sources=[SOURCE],
            define_macros=[("REQUOTE_SOURCE_SHA256", f'"{DIGEST}"')],
            optional=True,
        )
    ]
)
