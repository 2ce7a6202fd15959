"""The post-norm residual network family: blocks, norms, checkpoints (docs/design.md 1.1)."""
