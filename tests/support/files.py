"""What a save leaves in a directory."""

from __future__ import annotations

from pathlib import Path


def temp_leftovers(directory: Path) -> list[str]:
    """jobpersist's temp files (``.<name>.jptmp.<pid>.<random>``) in ``directory``."""
    return sorted(p.name for p in directory.iterdir() if ".jptmp." in p.name)


def in_memory(directory: Path) -> bool:
    """Whether ``directory``'s filesystem keeps its files in memory (tmpfs, ramfs; see
    ``jobpersist._codec.python.in_memory_fs``): no fsync makes a file durable there, so a
    ``deferred`` save that replaces a file schedules none."""
    from jobpersist._codec.python.in_memory_fs import frees_in_memory

    return frees_in_memory(directory.stat().st_dev)


def keeps_replaced_files(directory: Path) -> bool:
    """Whether a save into ``directory`` in ``deferred`` or ``none`` mode keeps the file it
    replaces open, to be freed later: where the filesystem is on a disk, not in memory."""
    return not in_memory(directory)
