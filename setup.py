"""The one thing pyproject.toml cannot say stably: the optional C extension.

The book simulator's requote walk in C (docs/simulator.md, "Speed"). ``optional=True``: without
a C compiler the install still succeeds and the simulator takes its numpy path (same outputs).
Everything else about the package is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "soakq.metrics.book._requote",
            sources=["soakq/metrics/book/_requote.c"],
            optional=True,
        )
    ]
)
