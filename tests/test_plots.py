"""Plots: PNGs are written whole, PCA finds the dominant direction with a fixed sign, routing stats are exact."""

import numpy as np
import pytest

from polyprag.kb.plots import adapter_usage, f1_bars, pca_2d, routing_pca, routing_stats

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5_000  # a real chart, not an empty canvas
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left no temp file behind


def routing(n=60, g=3, m=8, seed=0):
    w = np.random.default_rng(seed).random((n, g, m))  # (N, G, M)
    return w / w.sum(-1, keepdims=True)


def test_f1_bars_writes_png_into_new_folder(tmp_path):
    rows = [{"method": "RAG", "f1": 31.2, "em": 25.0}, {"method": "PRAG", "f1": 28.4},
            {"method": "Poly-PRAG", "f1": 100.0, "em": 90.0}]
    out = f1_bars(rows, tmp_path / "new" / "f1.png", title="HotpotQA")
    assert out == tmp_path / "new" / "f1.png"
    assert_png(out)


def test_f1_bars_names_a_missing_key(tmp_path):
    with pytest.raises(ValueError, match="row 1 lacks \\['f1'\\]"):
        f1_bars([{"method": "a", "f1": 1.0}, {"method": "b"}], tmp_path / "f1.png")


def test_pca_recovers_a_line_with_a_sign_independent_of_row_order():
    rng = np.random.default_rng(0)
    t = rng.normal(size=50)
    direction = np.array([0.1, -0.9, 0.3, 0.2, -0.4])  # largest |loading| is negative
    x = t[:, None] * direction + np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # (50, 5), points on a line
    xy = pca_2d(x)
    assert xy.shape == (50, 2)
    assert np.var(xy[:, 1]) < 1e-20
    corr = np.corrcoef(xy[:, 0], t)[0, 1]
    assert abs(corr) > 0.999
    # The largest loading is made positive, so PC 1 runs against t here, whatever SVD returned.
    assert corr < 0
    perm = rng.permutation(50)
    np.testing.assert_allclose(pca_2d(x[perm]), xy[perm], atol=1e-10)


def test_pca_degenerate_shapes_pad_with_zeros():
    np.testing.assert_array_equal(pca_2d(np.array([[1.0, 2.0, 3.0]])), np.zeros((1, 2)))
    xy = pca_2d(np.array([[1.0], [2.0], [4.0]]))  # D = 1: one component, second column zero
    np.testing.assert_allclose(xy, [[-4 / 3, 0], [-1 / 3, 0], [5 / 3, 0]])


def test_routing_pca_and_adapter_usage_write_pngs(tmp_path):
    w = routing()
    labels = [f"topic{i % 4}" for i in range(len(w))]
    assert_png(routing_pca(w, labels, tmp_path / "pca.png", title="routing by topic"))
    assert_png(routing_pca(w[:, 0], labels, tmp_path / "pca_2d_weights.png"))  # (N, M) input
    assert_png(adapter_usage(w, tmp_path / "usage.png", title="usage"))


def test_routing_pca_folds_more_than_20_labels_into_other(tmp_path):
    w = routing(n=90)
    labels = [f"t{i % 30}" for i in range(90)]
    assert_png(routing_pca(w, labels, tmp_path / "many.png"))


def test_routing_pca_rejects_label_count_mismatch(tmp_path):
    with pytest.raises(ValueError, match="3 labels for 60 documents"):
        routing_pca(routing(), ["a", "b", "c"], tmp_path / "x.png")


def test_routing_stats_one_hot_is_sparse_and_uniform_is_flat():
    one_hot = np.eye(6)[[0, 1, 2, 3, 4, 5, 0]]  # (7, 6)
    stats = routing_stats(one_hot)
    assert stats["n_docs"] == 7 and stats["n_adapters"] == 6
    assert stats["entropy_mean"] == pytest.approx(0.0, abs=1e-9)
    assert routing_stats(np.full((4, 3, 6), 1 / 6))["entropy_mean"] == pytest.approx(1.0)


def test_routing_stats_top_adapters_and_usage():
    m = 7
    w = np.zeros((2, 2, m))  # (N, G, M)
    w[:, :, 3] = 0.5
    w[:, :, 5] = 0.375
    w[:, :, 1] = 0.125
    w[:, 0, 6] = 0.25  # one group only: adapters 0, 1 and 6 all average 0.125; ties go to the lower index
    w[:, 1, 0] = 0.25
    stats = routing_stats(w)
    assert stats["top_adapters"] == [3, 5, 0, 1, 6]
    np.testing.assert_allclose(stats["mean_usage"], [0.125, 0.125, 0, 0.5, 0, 0.375, 0.125])
