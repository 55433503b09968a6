"""Benchmarks of the after-sales module (not part of the test suite): see bench/README.md."""
