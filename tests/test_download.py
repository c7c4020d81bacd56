"""Standard public datasets from their standard files: from dataset.root, from the cache, or downloaded into it.

Downloads come from a local HTTP server on 127.0.0.1 serving files the tests write in the real formats; the
known checksums are swapped for those files' own. Nothing real is downloaded.
"""

from __future__ import annotations

import functools
import http.server
import socket
import threading

import pytest

from regbench import data
from regbench.config import validate_config
from regbench.data import cifar10, fashion_mnist, mnist
from regbench.errors import RunError
from regbench.experiment import run_experiment

from .datafiles import CIFAR_TRAIN, write_cifar_archive, write_cifar_folder, write_idx_folder

TINY_TRAIN = ["trainer.epochs=1", "trainer.seeds=1", "trainer.batch_size=10", "trainer.progress=off"]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve(tmp_path):
    """serve() -> base URL of an HTTP server on 127.0.0.1 for a fresh folder (returned as well)."""
    servers = []

    def _serve():
        folder = tmp_path / f"served{len(servers)}"
        folder.mkdir()
        handler = functools.partial(_Quiet, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", folder

    yield _serve
    for s in servers:
        s.shutdown()
        s.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load(compose_cfg, *overrides):
    return data.load(validate_config(compose_cfg(*overrides)).dataset)


@pytest.mark.parametrize("module", [mnist, fashion_mnist])
def test_idx_download_is_verified_cached_and_reused_offline(compose_cfg, serve, tmp_path, monkeypatch, module):
    url, folder = serve()
    sums = write_idx_folder(folder, n_train=60, n_test=20)
    monkeypatch.setattr(module, "FILES", sums)
    cache = tmp_path / "cache"
    name = module.MnistConfig.name if module is mnist else module.FashionMnistConfig.name
    args = [f"dataset={name}", "dataset.download=true", f"dataset.base_url={url}", f"dataset.cache_dir={cache}"]
    splits = _load(compose_cfg, *args)
    assert splits.sizes() == {"train": 54, "val": 6, "test": 20}
    assert splits.kind == "image" and splits.input_shape == (1, 28, 28)
    assert sorted(p.name for p in (cache / name).iterdir()) == sorted(sums)  # verified files only, no temp files
    for f in folder.iterdir():
        f.unlink()  # the server has nothing now: a second load must come from the cache
    args[2] = f"dataset.base_url=http://127.0.0.1:{_closed_port()}"
    assert _load(compose_cfg, *args).sizes() == splits.sizes()


def test_a_corrupted_download_is_refused_and_nothing_is_cached(compose_cfg, serve, tmp_path, monkeypatch):
    url, folder = serve()
    sums = write_idx_folder(folder)
    first = "train-images-idx3-ubyte.gz"
    real = sums[first]
    blob = bytearray((folder / first).read_bytes())
    blob[100] ^= 0xFF  # one flipped byte in transit
    (folder / first).write_bytes(bytes(blob))
    monkeypatch.setattr(mnist, "FILES", sums)
    cache = tmp_path / "cache"
    with pytest.raises(RunError) as err:
        _load(
            compose_cfg,
            "dataset=mnist",
            "dataset.download=true",
            f"dataset.base_url={url}",
            f"dataset.cache_dir={cache}",
        )
    assert str(err.value).startswith(f"{url}/{first}: checksum mismatch (sha256 ")
    assert str(err.value).endswith(f", expected {real}); nothing was cached")
    assert "\n" not in str(err.value)
    assert list((cache / "mnist").iterdir()) == []


def test_offline_download_is_one_clear_line_and_caches_nothing(compose_cfg, tmp_path):
    cache = tmp_path / "cache"
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(RunError) as err:
        _load(
            compose_cfg,
            "dataset=mnist",
            "dataset.download=true",
            f"dataset.base_url={url}",
            f"dataset.cache_dir={cache}",
        )
    message = str(err.value)
    assert message.startswith(f"{url}/train-images-idx3-ubyte.gz: download failed (")
    assert message.endswith("offline? put the files in a folder and set dataset.root") and "\n" not in message
    assert list((cache / "mnist").iterdir()) == []


def test_a_missing_file_on_the_server_names_the_url(compose_cfg, serve, tmp_path):
    url, _ = serve()  # an empty folder: every request is a 404
    with pytest.raises(
        RunError, match=r"/train-images-idx3-ubyte.gz: download failed \(HTTP Error 404: File not found\)"
    ):
        _load(
            compose_cfg,
            "dataset=mnist",
            "dataset.download=true",
            f"dataset.base_url={url}",
            f"dataset.cache_dir={tmp_path}",
        )


def test_without_download_a_missing_dataset_says_how_to_get_it(compose_cfg, tmp_path):
    with pytest.raises(RunError) as err:
        _load(compose_cfg, "dataset=mnist", f"dataset.cache_dir={tmp_path}")
    assert str(err.value) == (
        f"mnist: train-images-idx3-ubyte.gz not found in {tmp_path / 'mnist'}; set dataset.download=true to fetch "
        "it, or dataset.root=FOLDER holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz"
    )
    assert not (tmp_path / "mnist").exists() or not any((tmp_path / "mnist").iterdir())


def test_root_is_read_as_it_is_and_a_missing_file_is_named(compose_cfg, tmp_path):
    write_idx_folder(tmp_path / "fm", n_train=30, n_test=10)
    splits = _load(compose_cfg, "dataset=fashion_mnist", f"dataset.root={tmp_path / 'fm'}")
    assert splits.sizes() == {"train": 27, "val": 3, "test": 10}
    (tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(RunError, match=r"dataset.root=.*/fm: t10k-labels-idx1-ubyte.gz not found; expected "):
        _load(compose_cfg, "dataset=fashion_mnist", f"dataset.root={tmp_path / 'fm'}")


def test_idx_pixels_and_labels_are_read_exactly(compose_cfg, tmp_path):
    write_idx_folder(tmp_path, n_train=30, n_test=10)
    raw = mnist.load(validate_config(compose_cfg("dataset=mnist", f"dataset.root={tmp_path}")).dataset)
    import gzip

    import numpy as np

    images = np.frombuffer(gzip.decompress((tmp_path / "t10k-images-idx3-ubyte.gz").read_bytes())[16:], np.uint8)
    assert np.array_equal(raw.x_test.reshape(-1), images)
    assert raw.y_test.tolist() == [i % 10 for i in range(10)]


def test_a_file_that_is_not_idx_is_named(compose_cfg, tmp_path):
    write_idx_folder(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(RunError, match=r"train-labels-idx1-ubyte.gz: not a readable gzip file"):
        _load(compose_cfg, "dataset=mnist", f"dataset.root={tmp_path}")


def test_cifar10_download_reads_the_binary_records_from_the_verified_archive(compose_cfg, serve, tmp_path, monkeypatch):
    url, folder = serve()
    monkeypatch.setattr(cifar10, "ARCHIVE_SHA256", write_cifar_archive(folder / cifar10.ARCHIVE))
    cache = tmp_path / "cache"
    args = ["dataset=cifar10", "dataset.download=true", f"dataset.base_url={url}", f"dataset.cache_dir={cache}"]
    splits = _load(compose_cfg, *args)
    assert splits.sizes() == {"train": 54, "val": 6, "test": 20}
    assert splits.input_shape == (3, 32, 32) and splits.kind == "image"
    assert [p.name for p in (cache / "cifar10").iterdir()] == [cifar10.ARCHIVE]


def test_cifar10_records_keep_their_colour_planes(tmp_path):
    import numpy as np

    from .datafiles import cifar_records

    x, y = cifar10.read_records(cifar_records(3, 5), "t")
    raw = np.frombuffer(cifar_records(3, 5), np.uint8).reshape(3, 3073)
    assert y.tolist() == [0, 1, 2]
    assert np.array_equal(x[1, 2].reshape(-1), raw[1, 1 + 2048 :])  # blue is the last 1024 bytes of a record
    with pytest.raises(RunError, match=r"t: 3072 bytes is not a whole number of 3073-byte CIFAR-10 records"):
        cifar10.read_records(cifar_records(1, 0)[:-1], "t")


@pytest.mark.parametrize("layout", ["loose", "folder", "archive"])
def test_cifar10_from_root_trains_the_cnn_on_rgb_32x32(compose_cfg, tmp_path, layout):
    if layout == "loose":
        write_cifar_folder(tmp_path)
    elif layout == "folder":
        write_cifar_folder(tmp_path / "cifar-10-batches-bin")
    else:
        write_cifar_archive(tmp_path / cifar10.ARCHIVE)
    cfg = compose_cfg("dataset=cifar10", f"dataset.root={tmp_path}", "model=cnn", "model.channels=4", *TINY_TRAIN)
    record = run_experiment(cfg)
    assert record["job"]["sizes"] == {"train": 54, "val": 6, "test": 20}
    assert all(0.0 <= m["final"]["test_acc"] <= 1.0 for m in record["members"])


def test_cifar10_root_without_its_files_lists_what_it_needs(compose_cfg, tmp_path):
    write_cifar_folder(tmp_path)
    (tmp_path / CIFAR_TRAIN[2]).unlink()
    with pytest.raises(RunError, match=r"neither the six CIFAR-10 .bin files \(data_batch_1.bin, .*\) nor "):
        _load(compose_cfg, "dataset=cifar10", f"dataset.root={tmp_path}")
