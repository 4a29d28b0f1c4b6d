"""Bar-chart specifications of a data source's statistics (``DataSource.stats``), for Plotly.

Ingest records three histograms per source (control.services.ingest): answer
lengths binned by lower bound, ground-truth boxes per detection sample, and the
size of each sample's first image. This module turns them into plain
``{"id", "title", "x", "y", "xtitle"}`` dicts the page draws; malformed entries
are skipped rather than trusted, because ``stats`` is a free JSON field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from control.services.ingest import ANSWER_LENGTH_BINS


def _counts(raw: Any) -> dict[str, int]:
    """The ``{label: count}`` entries of ``raw`` whose count is a non-negative integer."""
    if not isinstance(raw, Mapping):
        return {}
    return {
        str(k)[:40]: v for k, v in raw.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 0
    }


def _int_key(key: str) -> int | None:
    """``key`` as a small non-negative integer, or None (``"²"`` is a digit to ``str.isdigit``, not here)."""
    return int(key) if re.fullmatch(r"[0-9]{1,9}", key) else None


def bin_labels(bins: Sequence[int]) -> dict[int, str]:
    """Labels of half-open integer bins given by their lower bounds; the last is open-ended.

    >>> bin_labels([0, 8, 16])
    {0: '0–7', 8: '8–15', 16: '16+'}
    """
    labels = {}
    for i, low in enumerate(bins):
        labels[low] = f"{low}–{bins[i + 1] - 1}" if i + 1 < len(bins) else f"{low}+"
    return labels


def answer_length_chart(raw: Any, bins: Sequence[int] = ANSWER_LENGTH_BINS) -> dict | None:
    """Every bin from the first up to the last non-empty one (zeros included), in order."""
    counts = _counts(raw)
    by_bin: dict[int, int] = {}
    for key, value in counts.items():
        low = _int_key(key)
        if low is not None and low in bins:
            by_bin[low] = value
    if not any(by_bin.values()):
        return None
    last = max(b for b, v in by_bin.items() if v > 0)
    labels = bin_labels(bins)
    shown = [b for b in bins if b <= last]
    return {
        "id": "answer-length",
        "title": "Answer length (characters)",
        "xtitle": "characters",
        "x": [labels[b] for b in shown],
        "y": [by_bin.get(b, 0) for b in shown],
    }


def boxes_chart(raw: Any) -> dict | None:
    """Samples per number of ground-truth boxes, in increasing number of boxes."""
    counts = {n: v for k, v in _counts(raw).items() if (n := _int_key(k)) is not None}
    if not any(counts.values()):
        return None
    keys = sorted(counts)
    return {
        "id": "boxes-per-sample",
        "title": "Boxes per sample",
        "xtitle": "boxes",
        "x": [str(k) for k in keys],
        "y": [counts[k] for k in keys],
    }


def image_size_chart(raw: Any) -> dict | None:
    """Samples per first-image size (``WxH``), most frequent first, ties by label."""
    counts = _counts(raw)
    if not any(counts.values()):
        return None
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "id": "image-sizes",
        "title": "Image sizes (first image)",
        "xtitle": "width × height",
        "x": [k for k, _ in ordered],
        "y": [v for _, v in ordered],
    }


def stats_charts(stats: Any) -> list[dict]:
    """The charts that ``stats`` has data for, in page order."""
    if not isinstance(stats, Mapping):
        return []
    charts = [
        answer_length_chart(stats.get("answer_length_histogram")),
        boxes_chart(stats.get("boxes_per_sample")),
        image_size_chart(stats.get("image_sizes")),
    ]
    return [c for c in charts if c is not None]
