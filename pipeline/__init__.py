"""Luigi tasks that chain the nvsc stages, hashed atomic outputs, provenance and the `nvsc` command."""

import os
import sys


def _workers_requested(argv: list[str]) -> int:
    """The N of `--workers N` / `--workers=N` on the command line (Luigi's default: 1)."""
    for i, arg in enumerate(argv):
        value = arg.partition("=")[2] if arg.startswith("--workers=") else (
            argv[i + 1] if arg == "--workers" and i + 1 < len(argv) else None)
        if value is not None and value.isdigit():
            return int(value)
    return 1


# Several Luigi workers on few cores: OpenMP threads that spin while they wait starve each other and slow torch on
# the CPU down 30-50 times, so they must wait passively, and each worker gets its share of the cores instead of all
# of them (on 2 cores, two NeRF fits of one thread each took 9-10 s apiece side by side, where one fit of two
# threads took 6-33 s depending on what else ran). A single worker is better off spinning: passive waiting made the
# demo's training 30% slower (42 against 60 images/s on 2 cores). Set before torch is imported (Luigi imports this
# package first), and only where the user has not chosen.
_WORKERS = _workers_requested(sys.argv)
if _WORKERS > 1:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))
