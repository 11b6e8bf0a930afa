"""Checkpoints: tensors only, atomic writes, safe loading; foreign (rosinality) files without unpickling code."""

import argparse
import os

import pytest
import torch

from lfsgan.io import atomic_path, load_checkpoint, load_foreign_checkpoint, save_checkpoint


def test_roundtrip_and_meta(tmp_path):
    p = tmp_path / "c.pt"
    save_checkpoint(p, {"g": {"w": torch.arange(3.0)}, "x": torch.ones(2)}, {"step": 3})
    tensors, meta = load_checkpoint(p)
    assert torch.equal(tensors["g"]["w"], torch.arange(3.0)) and meta == {"step": 3}
    assert oct(p.stat().st_mode & 0o777) != "0o600"


def test_non_tensor_values_are_refused(tmp_path):
    with pytest.raises(TypeError, match="only tensors"):
        save_checkpoint(tmp_path / "c.pt", {"args": argparse.Namespace(a=1)})
    assert not list(tmp_path.iterdir())


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not list(tmp_path.iterdir())


def test_pickled_code_is_never_run(tmp_path):
    p = tmp_path / "evil.pt"
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"g": Evil()}, p)
    with pytest.raises(ValueError, match="not a loadable tensors-only checkpoint"):
        load_checkpoint(p)
    with pytest.raises(ValueError, match="cannot be loaded safely"):
        load_foreign_checkpoint(p)
    assert not marker.exists()


def test_rosinality_namespace_is_skipped(tmp_path):
    p = tmp_path / "ffhq.pt"
    torch.save({"g_ema": {"w": torch.ones(2)}, "args": argparse.Namespace(size=256, lr=0.002), "ada_aug_p": 0.1}, p)
    payload, skipped = load_foreign_checkpoint(p)
    assert torch.equal(payload["g_ema"]["w"], torch.ones(2)) and payload["ada_aug_p"] == 0.1
    assert "args" not in payload and skipped and "args" in skipped[0] and "size" in skipped[0]


def test_identical_checkpoints_are_identical_bytes(tmp_path):
    from lfsgan.io import sha256_file

    for name in ("a.pt", "b.pt"):
        save_checkpoint(tmp_path / name, {"w": torch.arange(4.0)}, {"k": 1})
    assert sha256_file(tmp_path / "a.pt") == sha256_file(tmp_path / "b.pt")


def test_key_mismatch_names_missing_and_unexpected_keys():
    from lfsgan.io import key_mismatch

    assert key_mismatch({"a": 1, "b": 2}, ["b", "a"]) == ""
    assert key_mismatch(["a", "b", "c"], ["c", "z"]) == "missing ['a', 'b'], unexpected ['z']"
    assert key_mismatch([f"k{i}" for i in range(5)], [], show=2) == "missing ['k0', 'k1'] …, unexpected []"


def test_non_finite_weights_are_refused_by_every_loader(tmp_path):
    """NaN/inf in any floating tensor (nested too) is refused where it enters, naming file and entry."""
    p = tmp_path / "c.pt"
    save_checkpoint(p, {"g": {"w": torch.tensor([1.0, float("nan")])}, "images": torch.zeros(2, dtype=torch.uint8)})
    with pytest.raises(ValueError, match=r"c\.pt: 'g\.w' holds 1 non-finite"):
        load_checkpoint(p)
    save_checkpoint(p, {"g": {"w": torch.tensor([1.0, float("-inf")], dtype=torch.float64)}})
    with pytest.raises(ValueError, match="non-finite"):
        load_checkpoint(p)
    save_checkpoint(p, {"g": {"w": torch.ones(2)}, "n": torch.tensor([3])})
    assert load_checkpoint(p)[0]["n"].item() == 3  # finite floats and integers pass
    foreign = tmp_path / "ros.pt"
    torch.save({"g_ema": {"w": torch.tensor([float("inf")])}, "args": argparse.Namespace(size=8)}, foreign)
    with pytest.raises(ValueError, match=r"ros\.pt: 'g_ema\.w' holds 1 non-finite"):
        load_foreign_checkpoint(foreign)


def test_empty_file_is_named_as_such(tmp_path):
    p = tmp_path / "empty.pt"
    p.touch()
    with pytest.raises(ValueError, match=r"empty\.pt: .*empty file \(0 bytes\)"):
        load_checkpoint(p)
    with pytest.raises(ValueError, match=r"empty\.pt: .*empty file \(0 bytes\)"):
        load_foreign_checkpoint(p)


def test_state_mismatch_names_keys_and_shapes():
    from lfsgan.io import state_mismatch

    model = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    assert state_mismatch(model, {"a": torch.ones(2, 3), "b": torch.ones(4)}) == ""
    assert state_mismatch(model, {"a": torch.ones(2, 3)}) == "missing ['b'], unexpected []"
    assert state_mismatch(model, {"a": torch.ones(3, 3), "b": torch.ones(4)}) == "shapes differ: a [3, 3] (model [2, 3])"


def test_leftover_temporaries_of_killed_writes_are_removed_but_live_ones_kept(tmp_path):
    import fcntl

    from lfsgan.io import remove_stale_temps

    dead = tmp_path / ".x.pt.abc123.tmp"
    dead.write_bytes(b"half a file")  # its writer was killed: nobody holds its lock
    live = tmp_path / ".y.pt.def456.tmp"
    live.write_bytes(b"being written")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as atomic_path's writer does until its rename
    try:
        assert remove_stale_temps(tmp_path) == [dead]
        assert live.exists() and not dead.exists()
    finally:
        os.close(fd)
    dead.write_bytes(b"again")
    save_checkpoint(tmp_path / "x.pt", {"w": torch.zeros(2)})  # the next write of x.pt cleans its leftovers
    assert not dead.exists() and live.exists() and sorted(p.name for p in tmp_path.iterdir()) == [".y.pt.def456.tmp", "x.pt"]
