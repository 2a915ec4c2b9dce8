"""Helpers shared by the test modules (fixtures live in ``conftest.py``).

``backends`` (which backend can run, ``require_backend``), ``jobenv`` (the job's environment,
child processes), ``values`` (comparing values), ``reference`` (differential runs against
amazon-braket-sdk), ``memory`` (peak memory of an action), ``files`` (temp leftovers),
``threads`` (work run in several threads at once).
"""
