"""One optimisation step of a NeRF fit: the eager reference, or static shapes replayed as a CUDA graph.

The eager step evaluates exactly the samples that the occupancy grid keeps. Their number decides tensor shapes,
so each step waits for the GPU and then launches its hundred-odd kernels one by one from Python: on an H100 that
overhead, not the field, bounds a step (`reports/benchmarks/nerf.md`). The static step fixes every shape (rays
per batch x samples per ray, and a buffer of `capacity` samples into which the kept ones are compacted), so it is
captured once as a CUDA graph and replayed with one launch per step (torch's whole-network capture recipe).

A graph cannot resize itself. instant-NGP meets the same problem by holding the samples per batch at 2^18 and
adapting the rays per batch to them (its testbed, `testbed_nerf.cu`); here the rays stay fixed and the buffer
follows the samples kept in recent steps: after each occupancy-grid update the host reads the largest count seen
since the last update, and the count that the next step will keep under the updated grid (its draws, from a copy
of the generator's state), and re-captures with a larger buffer when these come close to filling it, or a smaller
one once the grid has emptied enough space. Should a step keep more samples than the buffer holds, the rays
whose samples did not all fit leave the loss whole (counted in `dropped_rays`); no ray is ever rendered from part
of its samples.

Inside the graph, the pixel draws and jitter come from the fit's own generator, registered with the graph so
each replay draws fresh numbers, the same sequence an eager run draws; the learning rate is a device tensor the
host writes in place before each replay; Adam is fused and capturable. The occupancy grid's update runs outside
the graph and writes the buffers that the graph reads.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from nerf.renderer import ray_samples, render_training_rays

if TYPE_CHECKING:
    from nerf.field import HashGridField
    from nerf.fit import NeRFConfig
    from nerf.occupancy import OccupancyGrid

logger = logging.getLogger(__name__)

#: The buffer holds this multiple of the most samples one step kept since the last look. Between two looks
#: (16 steps) a batch of 8192 random rays keeps a count within a few percent of its mean; a grid update that
#: refills cells may raise it further, hence the margin.
CAPACITY_HEADROOM = 1.3
#: Capacities are multiples of 1 / CAPACITY_BUCKETS of all samples of a batch: few distinct shapes, each captured
#: (and each compiled by Triton) once at most.
CAPACITY_BUCKETS = 32
#: A smaller buffer is captured only when it saves at least this fraction of the current one (no back-and-forth).
SHRINK_SAVING = 0.25


def sample_capacity(kept: int, total: int) -> int:
    """Samples the static step's buffer holds when a step keeps up to `kept` of `total`: the headroom over `kept`,
    rounded up to a whole bucket, and at most `total` (which means: evaluate every sample, without compaction)."""
    bucket = max(1, -(-total // CAPACITY_BUCKETS))
    return min(total, bucket * max(1, math.ceil(kept * CAPACITY_HEADROOM / bucket)))


def ray_loss(color: Tensor, target: Tensor, complete: Tensor) -> Tensor:
    """Mean squared error [] over the colour channels of rays [R, 3] whose `complete` [R] is True (the mean over
    all rays, `torch.nn.functional.mse_loss`, when every ray is complete)."""
    squared = (color - target).square().sum(dim=1)  # [R]
    return torch.where(complete, squared, 0.0).sum() / (3 * complete.sum().clamp_min(1))


class TrainStep:
    """A fit's optimisation step over `config.rays_per_batch` random pixels of the training views; `run()` takes
    one step. static=False: the eager reference (dynamic shapes). static=True: fixed shapes, run eagerly, or with
    graph=True (CUDA only) captured as a CUDA graph and replayed. Statistics stay on the device until asked for."""

    def __init__(self, field: HashGridField, optimizer: torch.optim.Optimizer, origins: Tensor, directions: Tensor,
                 pixels: Tensor, config: NeRFConfig, generator: torch.Generator, grid: OccupancyGrid | None,
                 static: bool, graph: bool):
        if graph and (not static or origins.device.type != "cuda"):
            raise ValueError("a CUDA graph needs the static step on a CUDA device")
        self.field, self.optimizer, self.generator, self.grid = field, optimizer, generator, grid
        self.origins, self.directions, self.pixels = origins, directions, pixels  # [N, 3] each, every pixel
        self.rays, self.samples = config.rays_per_batch, config.samples_per_ray
        self.background = torch.as_tensor(config.background, dtype=origins.dtype, device=origins.device)  # [3]
        self.static, self.use_graph = static, graph
        self.device = origins.device
        self.capacity = self.rays * self.samples  # every sample, until the grid has emptied some space
        self.loss = torch.zeros((), device=self.device)  # [] loss of the latest step
        self.peak_kept = torch.zeros((), dtype=torch.int64, device=self.device)  # [] most kept since the last look
        self.dropped = torch.zeros((), dtype=torch.int64, device=self.device)  # [] rays left out, over the fit
        self.captures = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self._stream = torch.cuda.Stream(self.device) if graph else None
        self._previous: torch.cuda.Event | None = None

    def _step(self) -> None:
        """Draw pixels, render them, and take an Adam step on the loss (every op on the device, no host sync
        when static)."""
        index = torch.randint(0, self.pixels.shape[0], (self.rays,), generator=self.generator, device=self.device)
        render = render_training_rays(self.field, self.origins[index], self.directions[index], self.samples,
                                      self.background, self.generator, self.grid,
                                      self.capacity if self.static else None)
        loss = ray_loss(render.color, self.pixels[index], render.complete)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.loss.copy_(loss.detach())
        torch.maximum(self.peak_kept, render.kept, out=self.peak_kept)
        self.dropped.add_((~render.complete).sum())

    def run(self) -> None:
        """One optimisation step: a replay of the graph, or the step itself (eagerly, and captured for the next
        steps when a graph is due)."""
        if not self.use_graph:
            self._step()
            return
        if self.graph is None:
            self._capture()
        else:
            self.graph.replay()
        # Keep the host at most one step ahead of the GPU: the time budget is measured on the host, and
        # the GPU always has the next replay queued while the host waits for the previous one.
        done = torch.cuda.Event()
        done.record()
        if self._previous is not None:
            self._previous.synchronize()
        self._previous = done

    def _capture(self) -> None:
        """Take one step eagerly on the capture stream (it creates the lazy state a capture cannot: Adam's moments,
        cuBLAS workspaces, Triton modules), then capture the step for the next ones."""
        self.graph = None  # the old graph's memory returns to the allocator once its tensors are gone
        current = torch.cuda.current_stream(self.device)
        self._stream.wait_stream(current)
        with torch.cuda.stream(self._stream):
            self._step()
        current.wait_stream(self._stream)
        graph = torch.cuda.CUDAGraph()
        # Without this the graph would replay the random numbers drawn during capture, every time.
        graph.register_generator_state(self.generator)
        with torch.cuda.graph(graph, stream=self._stream):
            self._step()
        self.graph = graph
        self.captures += 1
        logger.debug("captured the training step with a buffer of %d of %d samples", self.capacity,
                     self.rays * self.samples)

    def set_learning_rate(self, lr: float) -> None:
        """The learning rate of the next step (in place where it is a tensor that a graph reads)."""
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    def adapt(self) -> None:
        """Size the buffer to the samples kept since the last call (a host sync; call it rarely, e.g. after
        each occupancy update). A new size is captured at the next `run()`."""
        if not self.static:
            return
        # The steps since the last call ran on the grid before its update; the next step runs on the new one.
        kept = max(int(self.peak_kept), self.kept_by_next_step())
        self.peak_kept.zero_()
        wanted = sample_capacity(kept, self.rays * self.samples)
        if wanted > self.capacity or wanted <= (1 - SHRINK_SAVING) * self.capacity:
            self.capacity = wanted
            self.graph = None

    @torch.no_grad()
    def kept_by_next_step(self) -> int:
        """Samples the next step will keep: its very draws, from a copy of the generator's state (so the fit's
        own sequence of draws does not move)."""
        probe = torch.Generator(device=self.device)
        probe.set_state(self.generator.get_state())
        index = torch.randint(0, self.pixels.shape[0], (self.rays,), generator=probe, device=self.device)
        _, _, keep = ray_samples(self.field, self.origins[index], self.directions[index], self.samples, True, probe,
                                 self.grid)
        return self.rays * self.samples if keep is None else int(keep.sum())

    def dropped_rays(self) -> int:
        """Rays left out of the loss so far because their samples overflowed the buffer (a host sync)."""
        return int(self.dropped)
