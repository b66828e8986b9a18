"""Build of the one compiled module, node/matcher/_pdqindex.c (the PDQ match index).

Everything else about the package lives in pyproject.toml; setuptools reads both.
No -march: the wheel must run on any x86-64 or arm64 machine. The C file picks a
popcnt build at load time where the CPU has it (GCC target_clones).
"""

import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    compile_args, link_args = ["/O2"], []
else:
    compile_args, link_args = ["-O3", "-pthread", "-std=gnu11"], ["-pthread", "-lm"]

setup(
    ext_modules=[
        Extension(
            "node.matcher._pdqindex",
            sources=["node/matcher/_pdqindex.c"],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
        )
    ]
)
