"""Figures for results and routing: F1 per method, routing PCA by topic, adapter usage and entropy.

Routing weights come as (N, G, M) (documents, target-layer groups, adapters) or (N, M).
Figures are built on `matplotlib.figure.Figure` with an Agg canvas, so no pyplot global state is
touched and nothing needs closing; each PNG is written atomically (temp file, then rename).
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import atomic
from ..method.routing import document_entropy, layer_entropy

__all__ = ["adapter_usage", "f1_bars", "pca_2d", "routing_pca", "routing_stats"]

MAX_COLOURS = 20
_TAB20 = matplotlib.colormaps["tab20"].colors
# The ten strong hues first, then their light partners, so few labels get well-separated colours.
_PALETTE = _TAB20[0::2] + _TAB20[1::2]
_GREY = _TAB20[15]  # kept for "other" when labels are folded, so no topic shares its colour


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(np.atleast_1d(fig.subplots(1, ncols)))


def _save(fig: Figure, path: str | Path) -> Path:
    """Render to memory first, so a failed render leaves no file; then temp file + rename."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    atomic.write_bytes(path, buf.getvalue())
    return path


def f1_bars(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Horizontal F1 bars (0-100) per method, top to bottom in the given order; EM beside when given."""
    if not rows:
        raise ValueError("f1_bars needs at least one row with 'method' and 'f1'")
    for i, row in enumerate(rows):
        missing = [k for k in ("method", "f1") if k not in row]
        if missing:
            raise ValueError(f"row {i} lacks {missing}: each row needs 'method' and 'f1' (0-100), got {row}")
    y = np.arange(len(rows))
    f1 = [float(r["f1"]) for r in rows]
    has_em = any("em" in r for r in rows)
    h = 0.4 if has_em else 0.7
    fig, (ax,) = _figure(7, 1 + 0.45 * len(rows) * (1.6 if has_em else 1))
    ax.bar_label(ax.barh(y, f1, height=h, color=_PALETTE[0], label="F1"), fmt="%.1f", padding=3)
    if has_em:
        em = [float(r["em"]) if "em" in r else np.nan for r in rows]  # NaN: no bar for a method without EM
        bars = ax.barh(y + h, em, height=h, color=_PALETTE[10], label="EM")
        ax.bar_label(bars, labels=["" if np.isnan(v) else f"{v:.1f}" for v in em], padding=3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))  # outside, clear of the value labels
    ax.set_yticks(y + (h / 2 if has_em else 0), [str(r["method"]) for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, max(100.0, *f1) * 1.12)  # room for the value labels
    ax.set_xlabel("score (%)")
    ax.set_title(title)
    return _save(fig, path)


def pca_2d(x: np.ndarray) -> np.ndarray:
    """(N, D) → (N, 2) projection on the top two principal components; zero columns where rank < 2.

    Each component's sign makes its largest-|value| loading positive, so the result does not
    depend on the SVD's arbitrary signs or on the order of the rows.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"pca_2d expects an (N, D) array, got shape {x.shape}")
    out = np.zeros((x.shape[0], 2))
    if x.size == 0:
        return out
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    comps = vt[:2]  # (k, D), k = min(2, N, D)
    idx = np.abs(comps).argmax(1)
    comps = comps * np.sign(comps[np.arange(len(comps)), idx])[:, None]
    out[:, : len(comps)] = xc @ comps.T
    return out


def _as_docs(weights: np.ndarray) -> np.ndarray:
    """Normalise routing weights to (N, G, M) once, at the edge."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 2:
        w = w[:, None, :]
    if w.ndim != 3 or w.shape[0] == 0 or w.shape[2] == 0:
        raise ValueError(f"routing weights must be (N, G, M) or (N, M) with N, M > 0, got shape {np.shape(weights)}")
    return w


def _colour_groups(labels: list[str]) -> list[tuple[str, tuple, np.ndarray]]:
    """(name, colour, row mask) per category, most frequent first; past 20 labels, the tail becomes "other"."""
    labels = [str(s) for s in labels]
    names = [name for name, _ in Counter(labels).most_common()]  # ties keep first-seen order
    arr = np.array(labels)
    if len(names) <= MAX_COLOURS:
        return [(n, _PALETTE[i], arr == n) for i, n in enumerate(names)]
    keep = names[: MAX_COLOURS - 1]
    palette = [c for c in _PALETTE if c != _GREY]
    groups = [(n, palette[i], arr == n) for i, n in enumerate(keep)]
    return groups + [(f"other ({len(names) - len(keep)} labels)", _GREY, ~np.isin(arr, keep))]


def routing_pca(weights: np.ndarray, labels: list[str], path: str | Path, title: str = "") -> Path:
    """Scatter of per-document routing vectors on two principal components, coloured by label."""
    w = _as_docs(weights)
    if len(labels) != len(w):
        raise ValueError(f"{len(labels)} labels for {len(w)} documents' routing weights: give one label per document")
    xy = pca_2d(w.reshape(len(w), -1))  # (N, 2)
    groups = _colour_groups(labels)
    fig, (ax,) = _figure(8, 6)
    # "other" is drawn first (it is last in the list) so the named topics sit on top of it.
    for name, colour, mask in reversed(groups):
        ax.scatter(xy[mask, 0], xy[mask, 1], s=14, color=colour, label=name, alpha=0.8, linewidths=0)
    # Folding the tail into "other" keeps the legend at <= 20 entries, so it is always readable.
    handles, names = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], names[::-1], loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small", markerscale=1.5)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    return _save(fig, path)


def _usage_and_entropy(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean weight per adapter (M,) and each document's routing entropy / log M (N,), from (N, G, M)."""
    return w.mean((0, 1)), document_entropy(torch.from_numpy(w)).numpy()


def adapter_usage(weights: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Two panels: mean weight per adapter, and a histogram of per-document normalised routing entropy."""
    usage, ent = _usage_and_entropy(_as_docs(weights))
    fig, (ax_u, ax_e) = _figure(11, 4, ncols=2)
    ax_u.bar(np.arange(len(usage)), usage, color=_PALETTE[0])
    ax_u.axhline(1 / len(usage), color="0.4", ls="--", lw=1, label="uniform (1/M)")
    ax_u.set_xlabel("adapter")
    ax_u.set_ylabel("mean routing weight")
    ax_u.set_ylim(0, max(usage.max(), 1 / len(usage)) * 1.25)  # headroom so the legend clears the bars
    ax_u.legend(loc="upper right")
    ax_e.hist(ent, bins=np.linspace(0, 1, 21), color=_PALETTE[1])
    ax_e.set_xlabel("routing entropy / log M  (0 = one adapter, 1 = uniform)")
    ax_e.set_ylabel("documents")
    fig.suptitle(title)
    return _save(fig, path)


def routing_stats(weights: np.ndarray) -> dict:
    """The numbers behind `adapter_usage`, as plain Python values a CLI can print or dump as JSON."""
    w = _as_docs(weights)
    usage, ent = _usage_and_entropy(w)
    top = np.argsort(-usage, kind="stable")[:5]  # ties go to the lower adapter index
    return {"n_docs": int(w.shape[0]), "n_adapters": int(w.shape[2]), "mean_usage": usage.tolist(),
            "entropy_mean": float(ent.mean()),
            "entropy_per_layer_mean": float(layer_entropy(torch.from_numpy(w)).mean()),
            "top_adapters": [int(i) for i in top]}
