"""Helpers shared by the test suites and the benchmarks.

- `polling`: wait for a condition by polling it, never for a fixed time.
- `ports`: free loopback ports and waiting for a process to listen or answer.
- `simulator`: the Llama API simulators of a test session, one per set of options (the `sim`
  fixture in tests/conftest.py hands them out).
"""
