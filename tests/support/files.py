"""What a save leaves in a directory."""

from __future__ import annotations

from pathlib import Path


def temp_leftovers(directory: Path) -> list[str]:
    """jobpersist's temp files (``.<name>.jptmp.<pid>.<random>``) in ``directory``."""
    return sorted(p.name for p in directory.iterdir() if ".jptmp." in p.name)
