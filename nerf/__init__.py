"""Distillation of views into a hash-grid NeRF whose density and colour depend on position only."""
