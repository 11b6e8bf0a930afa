"""Decode an image file to 8-bit RGB, centre-crop it to a square and resize it.

Policy (written into every manifest as :data:`COLOUR_POLICY` and :data:`CROP_POLICY`):

- EXIF orientation is applied, so the image is upright as a viewer shows it; ``size`` records
  (w, h) after that.
- Greyscale is repeated over three channels; 16-bit greyscale is scaled to 8 bits (v / 257, rounded),
  not clipped as Pillow's own conversion would.
- Transparent pixels are composited over **white** (as on a page), not dropped: dropping alpha
  would expose whatever colour a transparent pixel happens to store (often black).
- Centre crop to the largest square, ``left = (w - s) // 2``, ``top = (h - s) // 2`` with
  ``s = min(w, h)``, then one PIL resize to R×R with the named filter (none when ``s == R``).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageOps

from lfsgan.data.files import IMAGE_FORMATS

RESIZE_FILTERS: dict[str, Image.Resampling] = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
    "nearest": Image.Resampling.NEAREST,
}
DECODERS = tuple(sorted(set(IMAGE_FORMATS.values())))  # Pillow refuses every other format, whatever the suffix says
COLOUR_POLICY = (
    "8-bit RGB; EXIF orientation applied; greyscale repeated over 3 channels; 16-bit greyscale "
    "scaled by 1/257; transparent pixels composited over white"
)
CROP_POLICY = "centre crop to the largest square (left=(w-s)//2, top=(h-s)//2, s=min(w,h)), then resize to RxR"
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # "I": older Pillow's 16-bit PNG


def resample_filter(name: str) -> Image.Resampling:
    """The PIL filter called ``name`` (lanczos|bicubic|bilinear|box|nearest)."""
    try:
        return RESIZE_FILTERS[name]
    except KeyError:
        raise ValueError(f"unknown resize filter {name!r}; choose one of {sorted(RESIZE_FILTERS)}") from None


def decode_rgb(data: bytes, where: str) -> Image.Image:
    """Decode the bytes of one image of :data:`lfsgan.data.files.IMAGE_FORMATS` to an upright 8-bit RGB
    image (policy in the module docstring).

    ``where`` names the file in the error raised for an unreadable image, or for a file of several
    frames (an animated GIF, a multi-page TIFF): which frame is the image is the user's choice.
    """
    try:
        img = Image.open(io.BytesIO(data), formats=DECODERS)
        img.load()  # decode now, so a truncated file fails here with its name
        frames = getattr(img, "n_frames", 1)
        img = ImageOps.exif_transpose(img)
        rgb = _to_rgb(img)
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise ValueError(f"{where}: cannot read image ({type(e).__name__}: {e}); remove or replace it") from e
    if frames > 1:
        raise ValueError(f"{where}: holds {frames} frames (an animation or a multi-page file); save the frame you mean as a single image")
    return rgb


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in _SIXTEEN_BIT_MODES:
        grey16 = np.asarray(img).astype(np.float64)  # [H, W] in 0..65535
        img = Image.fromarray(np.clip(np.rint(grey16 / 257.0), 0, 255).astype(np.uint8), mode="L")
    bands = img.getbands()
    if "A" in bands or "a" in bands or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def centre_crop_resize(img: Image.Image, resolution: int, resize_filter: str = "lanczos") -> Image.Image:
    """Centre-crop ``img`` to the largest square and resize it to ``resolution``² (see :data:`CROP_POLICY`)."""
    resample = resample_filter(resize_filter)
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.crop((left, top, left + s, top + s))
    if s != resolution:
        img = img.resize((resolution, resolution), resample=resample)
    return img


def to_chw(img: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a uint8 tensor ``[3, H, W]``."""
    if img.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {img.mode!r}")
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()  # [3, H, W]
