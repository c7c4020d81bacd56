"""The report's PNG plots exist, decode, and are not blank."""

from __future__ import annotations

import matplotlib.image

from regbench.reporting.build import build
from regbench.reporting.collect import load_frame
from regbench.reporting.plots import gap_figure, plot_all

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


def test_gap_bars_sorted_by_effect_with_whole_labels_inside_the_figure(tmp_path):
    """The Δgap bars: the largest cut on top, every label whole (three early-stopping cells that differ only at
    their ends stay apart), and no label or axis title outside the figure."""
    cuts = {5: 0.10, 10: 0.02, 20: 0.05}  # patience -> how much the gap shrinks
    for patience, cut in cuts.items():
        reg = [(b[0] - cut, b[1], b[2]) for b in BASE]
        cfg = {"patience": patience, "min_delta": 0.0, "metric": "val_loss", "restore_best": True}
        job(tmp_path / str(patience), "early_stopping", cfg, BASE, reg)
    t = build([tmp_path])
    fig = gap_figure(t[t["arm"] != "baseline"])
    ax = fig.axes[0]
    labels = [tick.get_text() for tick in ax.get_yticklabels()]
    assert [next(p for p in cuts if f"patience={p}," in lab) for lab in labels] == [5, 20, 10]
    assert len(set(labels)) == 3
    fig.tight_layout()
    fig.canvas.draw()
    inside = fig.bbox.padded(1)
    for text in [*ax.get_yticklabels(), ax.xaxis.label]:
        box = text.get_window_extent()
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1, text
