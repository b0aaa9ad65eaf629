"""A frozen copy of the v1 `book` simulator (soakq 0.1, before issue 8), for speed baselines only.

bench/bench_book.py times it side by side with the current simulator in the same run, so the
speed-up is measured under the same machine load. Nothing in soakq imports it.
"""
