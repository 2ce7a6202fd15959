"""The post-norm residual network family: blocks, norms, checkpoints (DESIGN.md 1.1)."""
