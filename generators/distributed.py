"""Multi-process training through `torchrun`: which process am I, and the process group.

`torchrun --nproc-per-node N ...` starts N copies of the training command with RANK, LOCAL_RANK and WORLD_SIZE in the
environment; each copy calls `start_process_group`, trains a slice of every global batch under
`DistributedDataParallel` (gradients averaged across processes) and rank 0 alone writes checkpoints and logs.
NCCL joins CUDA processes, gloo CPU ones (which is how the tests exercise DDP on a machine without GPUs).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place among the training processes (one process, rank 0 of 1, without torchrun)."""

    rank: int = 0
    """Index of this process among all of them."""
    world_size: int = 1
    """Number of training processes."""
    local_rank: int = 0
    """Index of this process on its machine: the CUDA device it uses."""

    @property
    def is_main(self) -> bool:
        """True for the process that writes checkpoints, logs and progress bars."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def start_process_group(device: torch.device) -> tuple[ProcessGroup, torch.device]:
    """Join the process group that torchrun set up (if any); returns it and this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return ProcessGroup(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise InvalidInputError("LOCAL_RANK", f"is {local_rank} but only {torch.cuda.device_count()} CUDA devices "
                                    "are visible", "start at most one process per GPU (torchrun --nproc-per-node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size,
                                device_id=device if device.type == "cuda" else None)
    logger.info("process %d of %d on %s", rank, world_size, device)
    return ProcessGroup(rank, world_size, local_rank), device


def end_process_group(group: ProcessGroup) -> None:
    """Leave the process group started by `start_process_group` (no-op for a single process)."""
    if group.distributed and dist.is_initialized():
        dist.destroy_process_group()
