"""Work run in several threads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_threads(work: Callable[[int], None], count: int, timeout: float = 120) -> None:
    """Runs ``work(0)`` ... ``work(count - 1)``, each in its own thread, all released at once
    (a barrier) so that they overlap; fails if one hangs past ``timeout`` seconds or raises."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def body(index: int) -> None:
        try:
            start.wait()
            work(index)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, f"{len(errors)} thread(s) failed, first: {errors[0]!r}"
