"""Running one job on several devices (DDP): the launcher and the rank processes."""
