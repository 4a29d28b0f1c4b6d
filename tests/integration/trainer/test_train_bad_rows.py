"""A row the pre-flight sample missed and that turns out unusable is skipped, reported, and replaced."""

from __future__ import annotations

import json
from pathlib import Path

from trainer.config import build_run_spec, config_from_dict
from trainer.engine import open_session, run_loop
from trainer.engine.preflight import sample_indices

from .conftest import small_config


def test_unusable_rows_are_skipped_and_reported(copy_data, tmp_path: Path) -> None:
    # The pre-flight check looks at one row per split; every other math training row gets a broken image.
    checked = sample_indices(6, 1, seed=0)[0] + 1  # seed + 0: synth_math is the first source

    def edit(name: str, number: int, row: dict) -> dict:
        if name.startswith("train_math") and number != checked:
            row["images"][0]["bytes"] = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
        return row

    config = config_from_dict(
        small_config(copy_data(edit), reward={"workers": 1}, tracking={"console": False})
    )
    spec = build_run_spec(config, run_id="bad-rows")
    with open_session(config, list(spec.sources), output_dir=tmp_path / "out", sample_rows=1) as session:
        summary = run_loop(session)
        assert summary.steps == 3
    lines = (tmp_path / "out" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    points = [json.loads(line) for line in lines]
    bad = [p for p in points if p.get("event") == "bad_row"]
    assert bad, "no unusable row was drawn"
    for event in bad:
        assert event["message"].startswith("synth_math train (train_math_synth_math_6.parquet, row ")
        assert event["message"].endswith(
            ": skipped: not a decodable image; use PNG, JPEG, WebP, GIF, BMP or TIFF"
        )
    counts = [p["value"] for p in points if p.get("key") == "count" and p["source"] is None]
    assert counts == [4.0, 4.0, 4.0]  # every step still has its 2 prompts x 2 responses
