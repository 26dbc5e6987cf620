"""Benchmarks of smsproxy (not run by CI): see RESULTS.md and `bench/run.py --help`."""
