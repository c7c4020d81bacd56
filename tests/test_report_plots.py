"""The report's PNG plots exist, decode, and are not blank."""

from __future__ import annotations

import matplotlib.image

from regbench.report.build import build
from regbench.report.collect import load_frame
from regbench.report.plots import plot_all

from .report_records import job

BASE = [(0.90, 0.60, 0.62), (0.95, 0.58, 0.61), (0.92, 0.63, 0.60)]


def assert_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels[..., :3].var() > 1e-3  # something is drawn, not a blank canvas


def test_curves_bars_and_a_regularization_path(tmp_path):
    for i, strength in enumerate((1e-4, 1e-3, 1e-2)):
        reg = [(b[0] - 0.05 * (i + 1), b[1] + 0.01 * i + 0.005 * s, b[2]) for s, b in enumerate(BASE)]
        job(tmp_path / "sweep" / str(i), "l2", {"strength": strength, "biases": False}, BASE, reg)
    job(tmp_path / "sweep" / "3", "dropout", {"p": 0.5}, BASE, BASE)
    paths = [tmp_path / "sweep"]
    written = plot_all(build(paths), load_frame(paths), tmp_path / "plots")
    names = sorted(p.name.split("-")[0] for p in written)
    assert names == ["curves"] * 4 + ["gap", "path"]
    (path_png,) = [p for p in written if p.name.startswith("path-")]
    assert "l2.strength" in path_png.name
    for p in written:
        assert p.parent == tmp_path / "plots"
        assert_png(p)


def test_no_path_without_a_swept_strength(tmp_path):
    job(tmp_path, "l2", {"strength": 1e-3}, BASE, BASE)
    written = plot_all(build([tmp_path]), load_frame([tmp_path]), tmp_path / "plots")
    assert sorted(p.name.split("-")[0] for p in written) == ["curves", "gap"]
