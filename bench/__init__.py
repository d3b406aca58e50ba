"""Benchmarks of Llama team chat: `make bench` runs them all (see bench/run_all.py)."""
