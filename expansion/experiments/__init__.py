"""Experiments of every kind (train, expand, grow) behind one entry point, `run_experiment`."""

from expansion.experiments.runner import run_experiment

__all__ = ["run_experiment"]
