"""Deprecated alias of :mod:`ketch.trainer.function_runner`, kept for one release so
TrainJobs stored before the split (their command runs ``python -m
ketch.training.function_runner``) still run after an upgrade."""

from __future__ import annotations

from ketch.trainer.function_runner import main

if __name__ == "__main__":
    main()
