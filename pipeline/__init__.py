"""Luigi tasks that chain the nvsc stages, hashed atomic outputs, provenance and the `nvsc` command."""

import os

# Several Luigi workers (or a worker beside other jobs) on few cores: OpenMP threads that spin while they wait
# starve each other and slow torch on the CPU down 30-50 times. Passive waiting costs a single process little.
# Set before torch is imported (Luigi imports this package first), and only where the user has not chosen.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
