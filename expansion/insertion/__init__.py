"""Insertion of zero-initialised blocks, the single-pass scan and the descent certificate."""
