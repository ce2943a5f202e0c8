"""Pose-conditioned diffusion (3DiM): X-UNet, noise schedule, training, samplers, checkpoints and generator adapters."""
