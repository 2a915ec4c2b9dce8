"""Safe mode's allow-list: the globals a pickle may name, and what each one builds.

The one list: the safe interpreter (``safe``) resolves a global here before anything is
imported, and ``inspect`` (``jobpersist inspect``, ``verify --safe-only``) calls a global
"safe" when it is here.
"""

from __future__ import annotations

NDARRAY, TENSOR, RECONSTRUCT, DTYPE, SCALAR, FROMBUFFER = (
    "ndarray",
    "tensor",
    "_reconstruct",
    "dtype",
    "scalar",
    "_frombuffer",
)
# (module, name) -> what it builds. numpy 1.x writes numpy.core, numpy 2.x numpy._core.
KINDS: dict[tuple[str, str], str] = {
    ("builtins", "complex"): "complex",
    ("builtins", "set"): "set",
    ("builtins", "frozenset"): "frozenset",
    ("builtins", "bytearray"): "bytearray",
    ("collections", "OrderedDict"): "OrderedDict",
    ("collections", "Counter"): "Counter",
    ("collections", "deque"): "deque",
    ("datetime", "date"): "date",
    ("datetime", "time"): "time",
    ("datetime", "datetime"): "datetime",
    ("datetime", "timedelta"): "timedelta",
    ("datetime", "timezone"): "timezone",
    ("numpy", "ndarray"): NDARRAY,
    ("numpy", "dtype"): DTYPE,
    ("numpy.core.multiarray", "_reconstruct"): RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): SCALAR,
    ("numpy._core.multiarray", "scalar"): SCALAR,
    # Protocol 5 (in-band buffers): numpy.core.numeric._frombuffer(buf, dtype, shape, order).
    ("numpy.core.numeric", "_frombuffer"): FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): FROMBUFFER,
    ("pennylane.numpy.tensor", "tensor"): TENSOR,
}

ALLOWED_GLOBALS: dict[str, frozenset[str]] = {}
for _module, _name in KINDS:
    ALLOWED_GLOBALS[_module] = ALLOWED_GLOBALS.get(_module, frozenset()) | {_name}
del _module, _name
