"""The statistics charts of the source page, from ``DataSource.stats`` (pure code, no database)."""

from __future__ import annotations

import pytest

from webui.source_stats import bin_labels, stats_charts


def test_bin_labels_close_each_bin_before_the_next_and_leave_the_last_open():
    assert bin_labels([0, 8, 16, 2048]) == {0: "0–7", 8: "8–15", 16: "16–2047", 2048: "2048+"}


def test_ingest_stats_become_three_charts_in_page_order():
    stats = {
        "answer_length_histogram": {"0": 3, "16": 1},
        "boxes_per_sample": {"2": 4, "10": 1, "1": 2},
        "image_sizes": {"112x112": 5, "64x48": 5, "224x224": 9},
    }
    charts = stats_charts(stats)
    assert [c["id"] for c in charts] == ["answer-length", "boxes-per-sample", "image-sizes"]
    # Bins 0, 8, 16 up to the last non-empty one; the empty bin 8–15 is shown as 0.
    assert charts[0]["x"] == ["0–7", "8–15", "16–31"]
    assert charts[0]["y"] == [3, 0, 1]
    # Numeric order, not string order ("10" after "2").
    assert charts[1]["x"] == ["1", "2", "10"]
    assert charts[1]["y"] == [2, 4, 1]
    # Most frequent first, ties by label.
    assert charts[2]["x"] == ["224x224", "112x112", "64x48"]
    assert charts[2]["y"] == [9, 5, 5]


@pytest.mark.parametrize(
    "stats",
    [
        None,
        [],
        "text",
        {},
        {"answer_length_histogram": {}},
        {"answer_length_histogram": {"0": 0}},
        {"answer_length_histogram": "x", "boxes_per_sample": [1, 2], "image_sizes": 7},
        {"answer_length_histogram": {"7": 3, "-8": 2, "²": 1, "abc": 4}},  # not bin lower bounds
        {"boxes_per_sample": {"1": -2, "2": 1.5, "3": True, "4": "9", "five": 3}},  # no valid count
    ],
)
def test_empty_or_malformed_stats_give_no_chart(stats):
    assert stats_charts(stats) == []


def test_malformed_entries_are_dropped_and_valid_ones_kept():
    stats = {"boxes_per_sample": {"1": 2, "2": "many", "x": 5, "3": None}, "image_sizes": {"a" * 100: 1}}
    charts = stats_charts(stats)
    assert charts[0]["x"] == ["1"] and charts[0]["y"] == [2]
    assert charts[1]["x"] == ["a" * 40]  # labels are cut to 40 characters
