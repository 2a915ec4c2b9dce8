"""Whether a directory's filesystem keeps its files in memory (tmpfs, ramfs): the twin of
``rust/core/src/in_memory_fs.rs``.

A save that replaces a file on a disk keeps the replaced file open across the rename and has
it freed off the caller's path (``keep_replaced``): freeing a file there is disk work (0.1-0.2
ms on the project's test machine, with discards). In memory it is not: keeping a small file
open would only cost the save an ``open`` and the process a hand-over to the freeing thread,
so there the rename frees it (a large one is kept anyway: ``KEEP_ANYWAY_AT``). Known per
device, asked once.

Python has no ``fstatfs``: the type comes from ``/proc/self/mountinfo``, by name, where the
Rust twin reads the same two filesystems' magic numbers.
"""

from __future__ import annotations

import os

#: The filesystems that hold their files in memory (by ``mountinfo`` name).
IN_MEMORY_TYPES = frozenset({"tmpfs", "ramfs"})
#: A replaced file this big or bigger is kept even on such a filesystem: freeing its pages
#: takes milliseconds there too (50 ms for 350 MB here). As rust/core's.
KEEP_ANYWAY_AT = 32 << 20
#: The most devices remembered; beyond, the record starts again (as rust/core's).
MAX_DEVICES = 16

_DEVICES: dict[int, bool] = {}


def frees_in_memory(dev: int) -> bool:
    """Whether the filesystem of device ``dev`` keeps its files in memory. A failure to tell
    counts as a disk (the file is then kept: safe, merely a little slower)."""
    known = _DEVICES.get(dev)
    if known is None:
        known = filesystem_type(dev) in IN_MEMORY_TYPES
        if len(_DEVICES) >= MAX_DEVICES:
            _DEVICES.clear()
        _DEVICES[dev] = known
    return known


def filesystem_type(dev: int) -> str:
    """The type of the filesystem mounted from device ``dev`` (``"ext4"``, ``"tmpfs"``), or
    ``""`` when ``/proc/self/mountinfo`` does not tell."""
    wanted = f"{os.major(dev)}:{os.minor(dev)}"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                # "36 35 98:0 /root /mnt rw,noatime master:1 - ext4 /dev/vda rw"
                fields, _, rest = line.partition(" - ")
                parts = fields.split(" ", 3)
                if len(parts) > 2 and parts[2] == wanted:
                    return rest.split(" ", 1)[0]
    except OSError:
        pass
    return ""
