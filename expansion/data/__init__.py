"""Data sets as device-resident tensors, seeded splits, on-device batching (DESIGN.md 2)."""
