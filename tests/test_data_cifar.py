"""CIFAR readers on fake archives in the official python layout; checksum and path errors."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from jointaug.data import ChecksumError, build_dataset
from jointaug.data.cifar import CIFAR_INFO
from jointaug.data.download import download_url, md5sum

N_PER_BATCH = 6


def _batch(seed: int, n: int, label_keys: dict[str, int]) -> bytes:
    rng = np.random.default_rng(seed)
    d: dict[bytes, object] = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                              b"batch_label": b"fake batch"}
    for key, num in label_keys.items():
        d[key.encode()] = [int(x) for x in rng.integers(0, num, size=n)]
    return pickle.dumps(d, protocol=2)


def _members(name: str) -> dict[str, bytes]:
    if name == "cifar10":
        out = {f"data_batch_{i}": _batch(i, N_PER_BATCH, {"labels": 10}) for i in range(1, 6)}
        out["test_batch"] = _batch(9, N_PER_BATCH, {"labels": 10})
        out["batches.meta"] = pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}, protocol=2)
    else:
        keys = {"fine_labels": 100, "coarse_labels": 20}
        out = {"train": _batch(1, 2 * N_PER_BATCH, keys), "test": _batch(2, N_PER_BATCH, keys)}
        out["meta"] = pickle.dumps({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                    b"coarse_label_names": [f"k{i}".encode() for i in range(20)]}, protocol=2)
    return out


def _write_archive(tmp: Path, name: str) -> Path:
    info = CIFAR_INFO[name]
    path = tmp / info["filename"]
    with tarfile.open(path, "w:gz") as tf:
        for member, data in _members(name).items():
            ti = tarfile.TarInfo(f"{info['folder']}/{member}")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return path


def _expected(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    m = _members(name)
    files = CIFAR_INFO[name]["batches"][split]
    key = b"labels" if name == "cifar10" else b"fine_labels"
    ds = [pickle.loads(m[f]) for f in files]
    return (np.concatenate([d[b"data"] for d in ds]).reshape(-1, 3, 32, 32),
            np.concatenate([d[key] for d in ds]))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_archive_and_extracted_folder(tmp_path, name):
    archive = _write_archive(tmp_path, name)
    cache = str(tmp_path / "cache")
    for split in ("train", "test"):
        images, labels = _expected(name, split)
        ds = build_dataset(name, split, root=str(archive), cache_dir=cache, verify=False)
        assert ds.fixed_size == (32, 32) and ds.images.dtype == torch.uint8
        assert np.array_equal(ds.images.numpy(), images) and np.array_equal(ds.labels.numpy(), labels)
        img, lab = ds[3]
        assert img.shape == (3, 32, 32) and lab == int(labels[3])
        assert len(ds.classes) == (10 if name == "cifar10" else 100)
        # the same archive found through its directory, then from the cache
        again = build_dataset(name, split, root=str(tmp_path), cache_dir=cache, verify=False)
        assert torch.equal(again.images, ds.images) and "cache" in again.info
    with tarfile.open(archive) as tf:
        tf.extractall(tmp_path / "x", filter="data")
    folder = tmp_path / "x" / CIFAR_INFO[name]["folder"]
    for root in (folder, folder.parent):
        ds = build_dataset(name, "test", root=str(root), cache_dir=str(tmp_path / "c2"))
        assert np.array_equal(ds.images.numpy(), _expected(name, "test")[0])


def test_cifar100_coarse_labels_and_limit(tmp_path):
    archive = _write_archive(tmp_path, "cifar100")
    ds = build_dataset("cifar100", "train", root=str(archive), cache_dir=str(tmp_path / "c"), verify=False,
                       labels="coarse")
    assert len(ds.classes) == 20 and ds.labels.max() < 20
    sub = build_dataset("cifar10", "train", root=str(_write_archive(tmp_path, "cifar10")), limit=5,
                        cache_dir=str(tmp_path / "c"), verify=False)
    assert len(sub) == 5 and len(set(sub.labels.tolist())) == 5  # stratified: 5 different classes


def test_local_archive_checksum_mismatch(tmp_path):
    archive = _write_archive(tmp_path, "cifar10")
    with pytest.raises(ChecksumError) as err:
        build_dataset("cifar10", "train", root=str(archive), cache_dir=str(tmp_path / "c"))
    msg = str(err.value)
    assert str(archive) in msg and CIFAR_INFO["cifar10"]["md5"] in msg and md5sum(archive) in msg


def test_download_verifies_md5(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    out = download_url(src.as_uri(), tmp_path / "dl" / "ok.bin", md5sum(src))
    assert out.read_bytes() == b"payload"
    with pytest.raises(ChecksumError, match="0" * 32):
        download_url(src.as_uri(), tmp_path / "dl" / "bad.bin", "0" * 32)
    assert not (tmp_path / "dl" / "bad.bin").exists()
    with pytest.raises(OSError, match="put it at"):
        download_url((tmp_path / "absent.bin").as_uri(), tmp_path / "dl" / "x.bin")


def test_missing_paths_say_where_to_put_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_dataset("cifar10", "train", root=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        build_dataset("cifar10", "train", root=str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="downloads"):
        build_dataset("cifar100", "test", cache_dir=str(tmp_path / "cache"))


def test_tampered_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for member, data in _members("cifar10").items():
        (folder / member).write_bytes(data)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(ValueError, match="refusing"):
        build_dataset("cifar10", "test", root=str(folder), cache_dir=str(tmp_path / "c"))
