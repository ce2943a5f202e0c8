"""Scores (PSNR, SSIM, ...), summary tables, figures, turntables, image grids, the self-contained HTML report, and
its rebuild from the run folders of `nvsc run` (`nvsc report`)."""
