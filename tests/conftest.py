"""Suite-wide setup that must happen before torch is first imported."""

from __future__ import annotations

import os

# Spinning OpenMP threads slow CPU training by up to 10x on a shared 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
