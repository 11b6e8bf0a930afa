"""lfsgan: lifelong few-shot image generation (LFS-GAN and its baselines) as a reproducible workflow."""

__version__ = "0.1.0"
