"""Build the C codec extension (pyzram._kcodec) with the machine's compiler.

Everything else is declared in pyproject.toml; setuptools needs this file
only because an Extension cannot be declared there.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pyzram._kcodec",
            sources=["src/pyzram/_kcodec/kcodec.c", "src/pyzram/_kcodec/lz4hc.c"],
            depends=["src/pyzram/_kcodec/lz4hc.h"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra"],
        )
    ]
)
