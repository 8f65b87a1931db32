"""The optional C speedup (unmasking). Without a compiler the build goes on and trio_ws runs in pure
Python (``trio_ws.protocol.SPEEDUPS`` tells which)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "trio_ws.protocol._speedups",
            ["trio_ws/protocol/_speedups.c", "trio_ws/protocol/_speedups_parse.c"],
            depends=["trio_ws/protocol/_speedups.h"],
            optional=True,
            extra_compile_args=["-O3"],
        )
    ]
)
