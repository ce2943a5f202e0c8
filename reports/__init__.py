"""Scores (PSNR, SSIM), summary tables, figures, image grids and the self-contained HTML report."""
