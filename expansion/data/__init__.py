"""Data sets as device-resident tensors, seeded splits, on-device batching (docs/design.md 2)."""
