"""The pure-Python codec: the fallback when ``jobpersist._native`` is missing, and the
oracle the Rust codec is tested against. Same interface, same bytes.

Each module here is the twin of the Rust file of the same name in ``rust/core/src`` (or, for
``file_data`` and ``errors``, in the PyO3 glue, ``rust/src``).

It is meant to beat the reference on its own, so every step over a value's bytes is one call
into C (``binascii``, ``bytes.replace``, ``bytes.split``, ``struct``) over a piece that stays
in the CPU cache; there is no Python loop per line of base64, nor per key of a small file.
"""
