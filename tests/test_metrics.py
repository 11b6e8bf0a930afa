"""lfsgan.metrics: FID/KID through torch-fidelity, LPIPS diversity through lpips, forgetting, overhead.

Everything runs offline with real packages: the demo extractor is trained here, the Inception and
VGG weights files are written here (random init), LPIPS uses lpips' shipped linear layers on a
seeded random backbone.
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
import subprocess
import sys
import zipfile

import pandas as pd
import pytest
import torch

from lfsgan.io import load_checkpoint, sha256_file
from lfsgan.metrics import (
    MissingWeightsError,
    average_forgetting,
    choose_kid_subset_size,
    count_tensors,
    fid_kid,
    forgetting_matrix,
    lpips_diversity,
    make_lpips,
    parameter_overhead,
    train_demo_extractor,
    write_random_inception_weights,
)
from lfsgan.metrics.diversity import _backbone, _backbone_state_for_lpips, lpips_features, lpips_matrix
from lfsgan.metrics.weights import WrongWeightsError, file_identity, load_state_dict_safely, network_reachable

SHA_A = "a" * 64
SHA_B = "b" * 64


def waves(n: int, kind: int, seed: int, size: int = 16) -> torch.Tensor:
    """uint8 [n, 3, size, size]: horizontal (0), vertical (1) or circular (2) waves of random frequency, plus noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(size).float()
    freq = torch.rand(n, 1, 1, generator=g) * 0.5 + 0.3
    phase = torch.rand(n, 1, 1, generator=g) * 6.28
    if kind == 0:
        img = torch.sin(t.view(1, size, 1) * freq + phase).expand(n, size, size)
    elif kind == 1:
        img = torch.sin(t.view(1, 1, size) * freq + phase).expand(n, size, size)
    else:
        yy, xx = torch.meshgrid(t - size / 2, t - size / 2, indexing="ij")
        img = torch.sin((yy**2 + xx**2).sqrt().unsqueeze(0) * freq + phase)
    img = img + 0.2 * torch.randn(n, size, size, generator=g)
    x = ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.unsqueeze(1).expand(n, 3, size, size).contiguous()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def demo_weights(tmp_path_factory):
    images = torch.cat([waves(100, k, seed=k, size=16) for k in range(3)])
    labels = torch.arange(3).repeat_interleave(100)
    path = tmp_path_factory.mktemp("extractor") / "demo_cnn.pt"
    meta = train_demo_extractor(images, labels, path, seed=0, steps=50)
    return path, meta


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    return write_random_inception_weights(tmp_path_factory.mktemp("inception") / "random_inception.pth", seed=0)


@pytest.fixture(scope="module")
def random_lpips():
    return make_lpips("vgg", allow_random_backbone=True, allow_download=False, seed=0)


# ---------------------------------------------------------------- FID / KID


def test_demo_extractor_trains_and_is_recorded(demo_weights):
    path, meta = demo_weights
    assert meta["train_accuracy"] > 0.9
    assert meta["sha256"] == sha256_file(path)
    assert meta["class_counts"] == [100, 100, 100]


def test_demo_fid_zero_on_itself_positive_on_other_domain(demo_weights, tmp_path):
    path, _ = demo_weights
    real = waves(120, 0, seed=10)
    kw = dict(real_sha256=SHA_A, extractor="lfsgan-demo-cnn", weights_path=path, cache_dir=tmp_path, progress=False)
    same = fid_kid(real, real, **kw)
    resampled = fid_kid(waves(120, 0, seed=11), real, **kw)
    other = fid_kid(waves(120, 1, seed=12), real, **kw)
    assert abs(same["fid"]) < 1e-3
    assert other["fid"] > 1.0 and other["fid"] > 20 * resampled["fid"]
    assert other["kid_mean"] > 10 * abs(resampled["kid_mean"])
    p = other["protocol"]
    assert p["comparable_to_published"] is False and "Non-standard" in p["note"]
    assert p["weights_sha256"] == sha256_file(path) and p["extractor"] == "lfsgan-demo-cnn"
    assert p["n_fake"] == 120 and p["n_real"] == 120 and p["kid_subset_size"] == 120 and p["seed"] == 0
    assert p["resize"].startswith("none") and p["input_resolution"] == [16, 16]
    assert set(p["versions"]) == {"torch", "torchvision", "torch-fidelity", "lpips"}


def _cache_hit(caplog) -> bool:
    """Whether the last fid_kid call found the real statistics cached (it logs, the protocol does not:
    a hit depends on job order, and results must not)."""
    msgs = [r.getMessage() for r in caplog.records if r.name == "lfsgan.metrics.fid" and "real-set statistics" in r.getMessage()]
    caplog.clear()
    return msgs[-1].endswith("cached")


def test_real_statistics_cached_as_tensors(demo_weights, tmp_path, caplog):
    caplog.set_level("INFO", logger="lfsgan.metrics.fid")
    path, _ = demo_weights
    real, fake = waves(60, 0, seed=20), waves(60, 2, seed=21)
    kw = dict(real_sha256=SHA_A, extractor="lfsgan-demo-cnn", weights_path=path, cache_dir=tmp_path, progress=False)
    first = fid_kid(fake, real, **kw)
    assert _cache_hit(caplog) is False and "hit" not in first["protocol"]["real_stats_cache"]
    files = sorted(p.name for p in tmp_path.glob("*"))
    assert len(files) == 1 and SHA_A[:32] in files[0] and sha256_file(path)[:16] in files[0]
    assert files[0] == first["protocol"]["real_stats_cache"]["file"]
    tensors, _ = load_checkpoint(tmp_path / files[0])  # tensors only: loads with weights_only=True
    assert tensors["features"].dim() == 2 and tensors["features"].shape[0] == 60
    # The cache is keyed by real_sha256: garbage under the same key is served as the real set.
    second = fid_kid(fake, waves(60, 1, seed=22), **kw)
    assert _cache_hit(caplog) is True
    assert (second["fid"], second["kid_mean"]) == (first["fid"], first["kid_mean"])
    # A corrupt entry is refused and recomputed.
    (tmp_path / files[0]).write_bytes(b"not what was written")
    with pytest.warns(UserWarning, match="refused"):
        third = fid_kid(fake, real, **kw)
    assert _cache_hit(caplog) is False
    assert (third["fid"], third["kid_mean"]) == (first["fid"], first["kid_mean"])
    # Another reference set gets its own entry.
    fid_kid(fake, real, **{**kw, "real_sha256": SHA_B})
    assert _cache_hit(caplog) is False


def test_poisoned_cache_is_refused_and_runs_nothing(demo_weights, tmp_path, plant_poison):
    path, _ = demo_weights
    real, fake = waves(60, 0, seed=20), waves(60, 2, seed=21)
    cache = tmp_path / "cache"
    kw = dict(real_sha256=SHA_A, extractor="lfsgan-demo-cnn", weights_path=path, cache_dir=cache, progress=False)
    clean = fid_kid(fake, real, **kw)
    # The planted file is a working attack: plain unpickling runs it.
    probe = tmp_path / "probe"
    probe_dir = tmp_path / "probe_cache"
    probe_dir.mkdir()
    (probe_dir / "real-x.pt").touch()
    with zipfile.ZipFile(plant_poison(probe_dir, probe)[0]) as archive:  # torch.save's zip: its pickle, unpickled plainly
        pickle.loads(archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl"))))
    assert probe.exists()

    marker = tmp_path / "pwned"
    planted = plant_poison(cache, marker)
    assert len(planted) > 1
    with pytest.warns(UserWarning, match="refused"):
        again = fid_kid(fake, real, **kw)
    assert not marker.exists()
    assert (again["fid"], again["kid_mean"], again["kid_std"]) == (clean["fid"], clean["kid_mean"], clean["kid_std"])
    tensors, _ = load_checkpoint(cache / clean["protocol"]["real_stats_cache"]["file"])  # rewritten as tensors
    assert isinstance(tensors["features"], torch.Tensor)


def test_kid_subset_size_and_input_checks(demo_weights, tmp_path):
    assert choose_kid_subset_size(5000, 30000) == 1000
    assert choose_kid_subset_size(50, 300) == 50
    with pytest.raises(ValueError, match="kid_subset_size"):
        choose_kid_subset_size(50, 300, requested=60)
    path, _ = demo_weights
    kw = dict(real_sha256=SHA_A, extractor="lfsgan-demo-cnn", weights_path=path, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="uint8"):
        fid_kid(waves(8, 0, 0).float(), waves(8, 0, 1), **kw)
    with pytest.raises(ValueError, match="resize one set"):
        fid_kid(waves(8, 0, 0, size=8), waves(8, 0, 1), **kw)
    with pytest.raises(ValueError, match="hex digest"):
        fid_kid(waves(8, 0, 0), waves(8, 0, 1), **{**kw, "real_sha256": "task1"})
    with pytest.raises(ValueError, match="evaluation.fid.weights"):
        fid_kid(waves(8, 0, 0), waves(8, 0, 1), **{**kw, "weights_path": None})


def test_inception_weights_missing_names_file_and_config_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    x = waves(4, 0, seed=0)
    with pytest.raises(MissingWeightsError) as err:
        fid_kid(x, x, real_sha256=SHA_A, cache_dir=tmp_path / "cache", allow_download=False)
    msg = str(err.value)
    expected = tmp_path / "empty_torch_home" / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    assert str(expected) in msg and "evaluation.fid.weights" in msg
    if network_reachable("github.com"):
        pytest.skip("network reachable: the download path would be taken")
    with pytest.raises(MissingWeightsError, match="cannot be reached"):
        fid_kid(x, x, real_sha256=SHA_A, cache_dir=tmp_path / "cache")


def test_inception_runs_from_local_weights_file(inception_weights, tmp_path):
    real, fake = waves(4, 0, seed=30), waves(4, 1, seed=31)
    # Layer "64" stops torch-fidelity's Inception early (fast); the file is loaded either way.
    kw = dict(real_sha256=SHA_A, weights_path=inception_weights, cache_dir=tmp_path, feature_layer="64", progress=False)
    same, other = fid_kid(real, real, **kw), fid_kid(fake, real, **kw)
    assert abs(same["fid"]) < 1e-3 and other["fid"] > 1e-2 and math.isfinite(other["fid"])
    p = other["protocol"]
    assert p["extractor"] == "inception-v3-compat" and p["weights_sha256"] == sha256_file(inception_weights)
    assert p["kid_subset_size"] == 4 and "299x299" in p["resize"]
    assert p["comparable_to_published"] is False  # not pool3


def test_random_inception_is_not_comparable_to_published(inception_weights, tmp_path):
    """Right keys and shapes, standard layer, but not torch-fidelity's file: the protocol says so."""
    x = waves(2, 0, seed=41)
    r = fid_kid(x, x, real_sha256=SHA_A, weights_path=inception_weights, cache_dir=tmp_path, progress=False)
    p = r["protocol"]
    assert p["feature_layer"] == "2048 (pool3)" and p["weights_sha256"] == sha256_file(inception_weights)
    assert p["comparable_to_published"] is False and "not that of torch-fidelity's published" in p["note"]


def _hub_inception(inception_weights, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    hub_file = tmp_path / "torch_home" / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    hub_file.parent.mkdir(parents=True)
    shutil.copyfile(inception_weights, hub_file)
    return hub_file


def test_inception_in_torch_hub_cache_must_be_the_published_file(inception_weights, tmp_path, monkeypatch):
    hub_file = _hub_inception(inception_weights, tmp_path, monkeypatch)
    x = waves(3, 0, seed=40)
    with pytest.raises(WrongWeightsError, match=rf"{hub_file} has sha256 .* not that of the published .*lfsgan weights --fetch"):
        fid_kid(x, x, real_sha256=SHA_A, cache_dir=tmp_path / "cache", feature_layer="64", allow_download=False)


def test_inception_found_in_torch_hub_cache_is_comparable_when_published(inception_weights, tmp_path, monkeypatch):
    """The hub-cache path end to end, with the planted file's sha256 standing in as the published one
    (the real file is not available offline)."""
    from lfsgan.metrics import weights

    hub_file = _hub_inception(inception_weights, tmp_path, monkeypatch)
    monkeypatch.setitem(weights.PUBLISHED_SHA256, hub_file.name, sha256_file(hub_file))
    x = waves(2, 0, seed=40)
    r = fid_kid(x, x, real_sha256=SHA_A, cache_dir=tmp_path / "cache", allow_download=False, progress=False)
    assert r["protocol"]["weights_source"] == "torch hub cache" and r["protocol"]["weights_path"] == str(hub_file)
    assert r["protocol"]["comparable_to_published"] is True


def test_weights_files_are_loaded_without_unpickling_code(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"w": torch.zeros(2), "note": "a string is not a tensor"}, bad)
    with pytest.raises(ValueError, match="flat"):
        load_state_dict_safely(bad, "test", "evaluation.fid.weights")
    with pytest.raises(MissingWeightsError, match="does not exist"):
        load_state_dict_safely(tmp_path / "absent.pth", "test", "evaluation.fid.weights")


# ---------------------------------------------------------------- LPIPS


def test_lpips_matrix_matches_lpips_forward(random_lpips):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(5, 3, 16, 16, generator=g) * 2 - 1, torch.rand(4, 3, 16, 16, generator=g) * 2 - 1
    with torch.no_grad():
        ref = torch.stack([random_lpips(x[i : i + 1].expand(4, -1, -1, -1), y).flatten() for i in range(5)])
        mine = lpips_matrix(random_lpips, lpips_features(random_lpips, x), lpips_features(random_lpips, y))
    assert mine.shape == (5, 4)
    assert torch.allclose(mine, ref.double(), atol=1e-6)


def test_lpips_features_of_a_channels_last_batch_are_bit_identical_to_the_models_own_backbone(random_lpips):
    """A generator's channels-last images run through a channels-last copy of the backbone (no weight
    reorder per call): the same bits as the model's own backbone on that batch. Contiguous batches keep
    the model's own; the copy follows the weights when they change."""
    import lpips

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(6, 3, 32, 32, generator=g) * 2 - 1).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        own = [lpips.normalize_tensor(f) for f in random_lpips.net(random_lpips.scaling_layer(x))]
        fast = lpips_features(random_lpips, x)
        assert all(torch.equal(a, b) for a, b in zip(own, fast))
        assert _backbone(random_lpips, random_lpips.scaling_layer(x)) is not random_lpips.net
        assert _backbone(random_lpips, random_lpips.scaling_layer(x.contiguous())) is random_lpips.net
        model = make_lpips("vgg", allow_random_backbone=True, allow_download=False, seed=0)
        before = lpips_features(model, x)
        first = next(model.net.parameters())
        first.add_(0.5)  # in place: the copy must follow
        after = lpips_features(model, x)
        assert not torch.equal(before[0], after[0])
        assert torch.equal(after[0], lpips.normalize_tensor(model.net(model.scaling_layer(x))[0]))


def clustered(n_per: int, centers: torch.Tensor, counts: list[int] | None = None, seed: int = 0) -> torch.Tensor:
    """Noisy copies of each centre (counts[k] of centre k), interleaved in index order."""
    g = torch.Generator().manual_seed(seed)
    counts = counts or [n_per] * centers.shape[0]
    idx = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    idx = idx[torch.randperm(idx.numel(), generator=g)]
    return (centers[idx] + 0.3 * torch.randn(idx.numel(), *centers.shape[1:], generator=g)).clamp(-1, 1)


@pytest.fixture(scope="module")
def centers():
    return torch.rand(10, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_equal_clusters_give_b_lpips_equal_intra_lpips(random_lpips, centers):
    fake = clustered(6, centers)
    r = lpips_diversity(fake, centers, lpips_model=random_lpips, n_fake=60, cluster_size=50, progress=False)
    assert r["cluster_sizes"] == [6] * 10
    assert r["entropy"] == pytest.approx(1.0, abs=1e-3)
    assert r["b_lpips"] == pytest.approx(r["intra_lpips"], rel=1e-3)
    assert 0 < r["intra_lpips"] < 1


def test_one_cluster_gives_b_lpips_near_zero(random_lpips, centers):
    fake = clustered(0, centers, counts=[30] + [0] * 9)
    r = lpips_diversity(fake, centers, lpips_model=random_lpips, n_fake=30, progress=False)
    assert r["cluster_sizes"] == [30] + [0] * 9
    assert r["d_k"][0] > 0 and r["d_k"][1:] == [None] * 9
    assert r["intra_lpips"] == pytest.approx(r["d_k"][0])
    assert abs(r["b_lpips"]) < 1e-4 and r["entropy"] < 1e-3


def test_diversity_is_seeded_and_uses_first_n(random_lpips, centers):
    fake = clustered(0, centers, counts=[8, 8, 4] + [0] * 7)
    kw = dict(lpips_model=random_lpips, n_fake=20, cluster_size=3, progress=False)
    a, b = lpips_diversity(fake, centers, seed=3, **kw), lpips_diversity(fake, centers, seed=3, **kw)
    assert a["d_k"] == b["d_k"] and a["b_lpips"] == b["b_lpips"]
    assert a["cluster_sizes"][:3] == [8, 8, 4] and a["cluster_sizes_used"][:3] == [3, 3, 3]
    other = lpips_diversity(fake, centers, seed=4, **kw)
    assert other["d_k"][:3] != a["d_k"][:3]  # the member subsets follow the seed
    # Only the first n_fake samples count: appending more does not change the result.
    more = torch.cat([fake, torch.rand(20, 3, 16, 16, generator=torch.Generator().manual_seed(9)) * 2 - 1])
    assert lpips_diversity(more, centers, seed=3, **kw)["d_k"] == a["d_k"]
    p = a["protocol"]
    assert p["comparable_to_published"] is False and "NOT the published LPIPS" in p["note"]
    assert p["cluster_size"] == 3 and p["seed"] == 3 and p["resize"].startswith("none")


def test_diversity_upsamples_below_vgg_minimum_and_checks_range(random_lpips):
    c = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    r = lpips_diversity(clustered(3, c), c, lpips_model=random_lpips, n_fake=6, progress=False)
    assert "8x8 -> 16x16" in r["protocol"]["resize"]
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        lpips_diversity((c + 1) * 127.5, c, lpips_model=random_lpips, n_fake=2)


def test_random_lpips_backbone_is_torchvision_vgg16_features_without_classifier(random_lpips):
    # Built without the 120 M-parameter classifier: same layers and shapes as lpips' own torchvision
    # VGG16, Kaiming-normal (fan-out) weights and zero biases, reproducible from the seed.
    import lpips

    with torch.random.fork_rng():
        torch.manual_seed(0)
        reference = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
    ours, theirs = random_lpips.net.state_dict(), reference.net.state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    for key, value in ours.items():
        if key.endswith(".bias"):
            assert not value.any(), key
        else:
            fan_out = value.shape[0] * value[0, 0].numel()
            assert abs(value.std().item() / math.sqrt(2 / fan_out) - 1) < 0.1, key
    again = make_lpips("vgg", allow_random_backbone=True, allow_download=False, seed=0)
    assert all(torch.equal(v, again.net.state_dict()[k]) for k, v in ours.items())
    assert "without the classifier" in random_lpips.lfsgan_protocol["backbone"]
    assert sum(p.numel() for p in random_lpips.parameters()) < 20_000_000


def test_make_lpips_without_weights_names_file_and_config_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError) as err:
        make_lpips("vgg", allow_download=False)
    assert "vgg16-397923af.pth" in str(err.value) and "evaluation.lpips.backbone_weights" in str(err.value)


def test_make_lpips_loads_local_backbone_file(random_lpips, tmp_path):
    # A torchvision-format vgg16 state dict ("features.<i>.<param>", classifier ignored), values of our own.
    g = torch.Generator().manual_seed(7)
    features = {k.split(".", 1)[1]: torch.randn(v.shape, generator=g) for k, v in random_lpips.net.state_dict().items()}
    path = tmp_path / "vgg16_local.pth"
    torch.save({**{f"features.{k}": v for k, v in features.items()}, "classifier.6.bias": torch.zeros(1000)}, path)
    model = make_lpips("vgg", backbone_weights=path)
    assert torch.equal(model.net.slice1[0].weight, features["0.weight"])
    assert torch.equal(model.net.slice5._modules["28"].bias, features["28.bias"])
    info = model.lfsgan_protocol
    assert info["backbone_weights_sha256"] == sha256_file(path) and info["comparable_to_published"] is None
    assert not torch.equal(model.net.slice1[0].weight, random_lpips.net.slice1[0].weight)
    with pytest.raises(ValueError, match="missing"):
        _backbone_state_for_lpips(random_lpips, {"0.weight": features["0.weight"]}, path)


def test_make_lpips_refuses_a_hub_backbone_that_is_not_torchvisions(random_lpips, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    hub_file = tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    hub_file.parent.mkdir(parents=True)
    torch.save({f"features.{k.split('.', 1)[1]}": v for k, v in random_lpips.net.state_dict().items()}, hub_file)
    # Not torchvision's file (its sha256 is not 397923af8e79...): refused by name, with what to do.
    with pytest.raises(WrongWeightsError, match=rf"{hub_file} has sha256 .*vgg16-397923af.pth \(397923af8e79cdbb"):
        make_lpips("vgg", allow_download=False)


# ---------------------------------------------------------------- forgetting, overhead, imports


def test_forgetting_matrix_and_average_forgetting():
    records = [
        dict(method="finetune", after_task=a, task=t, metric="fid", value=v)
        for (a, t, v) in [(1, 1, 50.0), (2, 1, 70.0), (2, 2, 40.0), (3, 1, 90.0), (3, 2, 60.0), (3, 3, 45.0)]
    ] + [
        dict(method="lfsgan", after_task=a, task=t, metric="fid", value=v)
        for (a, t, v) in [(1, 1, 50.0), (2, 1, 50.0), (2, 2, 40.0), (3, 1, 50.0), (3, 2, 40.0), (3, 3, 45.0)]
    ]
    m = forgetting_matrix(records)
    assert set(m) == {"finetune", "lfsgan"}
    ft = m["finetune"]
    assert list(ft.index) == [1, 2, 3] and list(ft.columns) == [1, 2, 3]
    assert ft.at[3, 2] == 60.0 and math.isnan(ft.at[1, 3])
    # FID, lower is better: ((90 - 50) + (60 - 40)) / 2 = 30 -> got worse by 30.
    assert average_forgetting(ft, higher_is_better=False) == pytest.approx(30.0)
    assert average_forgetting(m["lfsgan"], higher_is_better=False) == 0.0
    # The same numbers read as a higher-is-better metric: positive still means worse.
    assert average_forgetting(ft, higher_is_better=True) == pytest.approx(-30.0)
    assert math.isnan(average_forgetting(ft.loc[[1], [1]], higher_is_better=False))
    with pytest.raises(ValueError, match="duplicate"):
        forgetting_matrix(records + [records[0]])
    with pytest.raises(ValueError, match="metric="):
        forgetting_matrix(records + [dict(records[0], metric="kid")])
    names = forgetting_matrix(
        [dict(method="m", after_task="b", task="b", metric="x", value=1.0)], task_order=["a", "b"]
    )["m"]
    assert isinstance(names, pd.DataFrame) and list(names.index) == ["a", "b"]


def test_count_tensors_and_overhead():
    state = {"a": torch.zeros(3, 4), "b": {"c": torch.zeros(5), "d": [torch.zeros(2, 2)]}}
    assert count_tensors(state) == 21
    assert parameter_overhead({"u": torch.zeros(4)}, state)["ratio"] == pytest.approx(4 / 21)
    with pytest.raises(TypeError, match=r"<root>\.b\.e"):
        count_tensors({"b": {"e": 3}})


def test_import_is_lazy():
    code = (
        "import sys, lfsgan.metrics, lfsgan.metrics.forgetting; "
        "heavy = {'torch_fidelity', 'lpips', 'torchvision'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_file_identity_path_is_portable(tmp_path, monkeypatch):
    """Inside the working directory the protocol names the file relatively (the same in every
    clone); outside it, absolutely. The sha256 is the identity either way."""
    (tmp_path / "run" / "results").mkdir(parents=True)
    inside, outside = tmp_path / "run" / "results" / "w.pt", tmp_path / "w.pt"
    inside.write_bytes(b"weights"), outside.write_bytes(b"weights")
    monkeypatch.chdir(tmp_path / "run")
    a, b = file_identity(inside), file_identity(outside)
    assert a == {"path": "results/w.pt", "sha256": sha256_file(inside)}
    assert b["path"] == str(outside.resolve()) and b["sha256"] == a["sha256"]


# ---------------------------------------------------------------- quality read-out (digit + domain heads)


STYLED = ("mnist-source", "mnist-inverted", "mnist-sketch", "mnist-color")


@pytest.fixture(scope="module")
def digit_extractor(tmp_path_factory):
    """The demo CNN as the workflow trains it (rule train_extractor) on the four demo domains at 16 px:
    domain head on the prepared sets, digit head also on every digit 0-9 drawn in each style."""
    from lfsgan.data import load_prepared, prepare_dataset
    from lfsgan.metrics.demo_extractor import load_demo_extractor
    from lfsgan.verbs.train_extractor import extractor_inputs

    root = tmp_path_factory.mktemp("digits")
    for name in STYLED:
        prepare_dataset(f"builtin:{name}", root / name, resolution=16, n_shots=10, shot_seed=0)
    sets = [load_prepared(root / name) for name in STYLED]
    x = extractor_inputs({"data": {"resolution": 16, "resize_filter": "lanczos"}}, [str(root / name) for name in STYLED])
    path = root / "demo_cnn.pt"
    meta = train_demo_extractor(x.images, x.labels, path, seed=0, steps=600, digits=x.digits, styles=x.styles,
                                style_names=x.style_names, label_names=x.label_names, progress=False)
    net, _ = load_demo_extractor(path)
    return net, meta, sets


def test_digit_renders_cover_every_digit_in_every_style_once(digit_extractor):
    from lfsgan.verbs.train_extractor import digit_renders

    _, _, sets = digit_extractor
    extra, digits, styles, names = digit_renders(sets, {"data": {"resolution": 16, "resize_filter": "lanczos"}})
    assert names == ["plain", "inverted", "sketch", "colour", "random"]
    for i, s in enumerate(sets):  # each style: the domain's 1,750 images + the other 3,250 rows = all 5,000 digits
        assert int((styles == i).sum()) + len(s.images) == 5000
        assert set(digits[styles == i].tolist()) == set(range(10))
    random = styles == 4  # the read-out-only rendering: every digit once, no domain holds it
    every_digit = torch.bincount(digits[styles == 0], minlength=10) + torch.bincount(sets[0].labels, minlength=10)
    assert int(random.sum()) == 5000 and torch.equal(torch.bincount(digits[random], minlength=10), every_digit)


def test_extractor_digit_head_records_heldout_accuracy_per_style(digit_extractor):
    _, meta, _ = digit_extractor
    acc = meta["heldout_accuracy"]
    assert meta["arch"]["n_digits"] == 10 and meta["heldout"]["n_images"] == round(0.1 * 25000)
    assert meta["n_digit_only_images"] == 4 * 5000 - 4 * 1750 + 5000
    assert set(acc["digit_per_style"]) == {"plain", "inverted", "sketch", "colour", "random"}
    assert acc["domain"] > 0.95 and all(a > 0.6 for a in acc["digit_per_style"].values()), acc


def test_quality_readout_healthy_real_images_are_not_collapsed(digit_extractor):
    from lfsgan.metrics.quality import quality_readout

    net, _, sets = digit_extractor
    target = sets[1]  # inverted digits 0-6
    perm = torch.randperm(len(target.images), generator=torch.Generator().manual_seed(1))
    q = quality_readout(net, target.images[perm[:300]], target.images, domain_index=1, threshold=0.9, seed=0,
                        target_digits=list(range(7)), shots=target.shots())
    assert not q["collapsed"], q["collapse_reasons"]
    assert q["domain_share"] > 0.95 and q["confident_share"] > 0.3
    assert sum(q["digit_histogram"][:7]) >= 0.9 * sum(q["digit_histogram"])  # the target holds 0-6
    assert 0.7 < q["spread_ratio"] < 1.3 and q["top_digit_share"] < 0.4
    assert q["coverage"] >= 6 and q["coverage_of"] == 7
    p = q["protocol"]
    assert p["threshold"] == 0.9 and p["n_samples"] == 300 and p["seed"] == 0 and "collapse_criterion" in p
    q_src = quality_readout(net, target.images[:100], target.images, domain_index=0)  # read as the source domain
    assert q_src["domain_share"] < 0.05


def test_quality_readout_reports_collapse(digit_extractor):
    from lfsgan.metrics.quality import quality_readout

    net, _, sets = digit_extractor
    target, labels = sets[1].images, sets[1].labels
    constant = target[:1].expand(200, -1, -1, -1).contiguous()  # one image repeated
    q = quality_readout(net, constant, target, domain_index=1, target_digits=list(range(7)))
    assert q["collapsed"] and q["spread_ratio"] < 1e-6  # 0 up to float rounding
    assert any("feature spread" in r for r in q["collapse_reasons"])
    # a planted one-digit generator: one confidently read "3" repeated covers 1 digit, with top share 1
    with torch.no_grad():
        conf, digit = net.heads(target[labels == 3])[2].softmax(1).max(1)
    three = target[labels == 3][int(torch.nonzero((conf > 0.99) & (digit == 3))[0])]
    q = quality_readout(net, three[None].expand(200, -1, -1, -1).contiguous(), target, domain_index=1, target_digits=list(range(7)))
    assert q["coverage"] == 1 and q["top_digit_share"] == 1.0 and q["top_digit"] == 3 and q["collapsed"]
    threes = target[labels == 3][:200]  # varied images, but of one digit only: a planted one-digit generator
    q = quality_readout(net, threes, target, domain_index=1, target_digits=list(range(7)))
    assert q["collapsed"] and q["top_digit"] == 3 and any("digit 3" in r for r in q["collapse_reasons"])
    assert q["coverage"] == 1 and q["top_digit_share"] > 0.9
    q = quality_readout(net, threes, target, domain_index=1, max_class_share=1.0)  # criterion recorded, and used
    assert not q["collapsed"] and "> 1.0" in q["protocol"]["collapse_criterion"]


def test_quality_readout_memorisation(digit_extractor):
    """A generator that outputs its 10 shots reads as fully memorised; held-out real images do not."""
    from lfsgan.metrics.quality import memorisation, quality_readout

    net, _, sets = digit_extractor
    ds = sets[1]
    shots = ds.shots()
    copies = shots.repeat(20, 1, 1, 1)  # [200, 3, 16, 16]: the shots, each 20 times
    q = quality_readout(net, copies, ds.images, domain_index=1, shots=shots)
    assert q["memorised_share"] == 1.0 and min(q["protocol"]["memorisation_tau"]) > 0
    held_out = torch.ones(len(ds.images), dtype=torch.bool)
    held_out[torch.as_tensor(ds.manifest["shots"])] = False
    fresh = ds.images[held_out][:300]
    q = quality_readout(net, fresh, ds.images, domain_index=1, shots=shots)
    assert q["memorised_share"] == 0.0  # by construction: each is one of the other real images
    # near-copies of a shot (a few grey levels of noise) still read as memorised
    noisy = (shots.repeat(10, 1, 1, 1).int() + torch.randint(-3, 4, (100, 3, 16, 16), generator=torch.Generator().manual_seed(0)))
    q = quality_readout(net, noisy.clamp(0, 255).to(torch.uint8), ds.images, domain_index=1, shots=shots)
    assert q["memorised_share"] > 0.9, q["memorised_share"]
    # the rule itself, on hand-made features: shot 0's nearest other image at 1, shot 1's at 2
    f_shots = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    f_others = torch.tensor([[0.0, 1.0], [10.0, 2.0]])
    f_fake = torch.tensor([[0.5, 0.0], [0.0, 1.5], [11.5, 0.0], [10.0, 2.5]])
    share, tau = memorisation(f_fake, f_shots, f_others)
    assert tau == [1.0, 2.0] and share == 0.5  # [0.5, 0] (0.5 < 1) and [11.5, 0] (1.5 < 2)


def test_diversity_reuses_assignment_features_with_the_same_result(random_lpips, centers, monkeypatch):
    # The fakes' backbone features from the assignment serve the within-cluster distances when they fit
    # the byte budget; with a zero budget every cluster's members go through the backbone again.
    import lfsgan.metrics.diversity as diversity

    fake = clustered(0, centers, counts=[9, 7, 4, 1] + [0] * 6)
    kw = dict(lpips_model=random_lpips, n_fake=21, cluster_size=5, seed=2, progress=False)
    calls = []
    real_features = diversity.lpips_features
    monkeypatch.setattr(diversity, "lpips_features", lambda m, x: calls.append(len(x)) or real_features(m, x))
    kept = lpips_diversity(fake, centers, **kw)
    assert sum(calls) == 10 + 21  # centres and fakes once each
    calls.clear()
    monkeypatch.setattr(diversity, "KEEP_FEATURE_BYTES", 0)
    again = lpips_diversity(fake, centers, **kw)
    assert sum(calls) == 10 + 21 + 5 + 5 + 4  # the members of every cluster with >= 2 again
    assert kept["cluster_sizes_used"] == again["cluster_sizes_used"] == [5, 5, 4, 1] + [0] * 6
    for a, b in zip(kept["d_k"], again["d_k"]):
        assert (a is None and b is None) or a == pytest.approx(b, rel=1e-6)
    assert kept["b_lpips"] == pytest.approx(again["b_lpips"], rel=1e-6)


def test_restyle_redraws_plain_images_exactly_as_the_domains_recipe_draws_them():
    """The ceiling rows of the quality table redraw the source's samples by each task's recipe; on a
    plain rendering (white ink on black) that is the recipe itself, pixel for pixel, in every style."""
    from lfsgan.data.demo import SOURCE_DIGITS, STYLES, render_style, restyle, select_rows

    rows = select_rows(SOURCE_DIGITS, "target")[::25]
    plain = render_style("plain", rows)
    for style in STYLES:
        assert torch.equal(restyle(plain, style, seed=1234), render_style(style, rows, seed=1234)), style
    with pytest.raises(ValueError, match="uint8 RGB"):
        restyle(plain.float(), "sketch")


@pytest.mark.parametrize("style", ["inverted", "sketch", "colour"])
def test_same_latent_correspondence_reads_a_perfect_restyling_as_kept(style):
    """The demo's own recipe applied to the source style's images (a perfect restyling: every latent
    keeps its shape) reads ≥ 0.98 in each style — filled, hollow-outlined and thick coloured strokes
    alike; the source against itself reads 1 (by construction)."""
    from lfsgan.data.demo import SOURCE_DIGITS, render_style, select_rows
    from lfsgan.metrics.correspondence import correspondence

    rows = select_rows(SOURCE_DIGITS, "target")[::3][:500]
    source = render_style("plain", rows)
    c = correspondence(source, render_style(style, rows))
    assert c["correspondence"] >= 0.98 and c["n"] == 500 and "ink map" in c["protocol"], c
    assert correspondence(source, source)["correspondence"] == 1.0 == correspondence(source, source)["top1"]


def test_same_latent_correspondence_is_chance_for_a_generator_unrelated_to_its_latents():
    """One image for every latent, or the right images in a shuffled order: the own latent's source
    sample is no more alike than another's, so the correspondence is about 0.5."""
    from lfsgan.data.demo import SOURCE_DIGITS, render_style, select_rows
    from lfsgan.metrics.correspondence import correspondence

    rows = select_rows(SOURCE_DIGITS, "target")[::3][:500]
    source, task = render_style("plain", rows), render_style("inverted", rows)
    for fake in (task[:1].expand_as(task).contiguous(),
                 task[torch.randperm(len(task), generator=torch.Generator().manual_seed(0))]):
        c = correspondence(source, fake)
        assert 0.4 < c["correspondence"] < 0.6 and c["top1"] < 0.02, c
    with pytest.raises(ValueError, match="one shape"):
        correspondence(source, task[:10])
