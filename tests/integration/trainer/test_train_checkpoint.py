"""A run from a checkpoint directory (the path a real Qwen2-VL / Qwen2.5-VL run takes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.__main__ import main
from trainer.models import save_tiny


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_a_checkpoint_directory_trains(arch, synth_dir: Path, tmp_path: Path, write_config, capsys) -> None:
    checkpoint = save_tiny(tmp_path / "ckpt", arch=arch)
    config = write_config(synth_dir, model={"path": str(checkpoint)}, reward={"workers": 1})
    code = main(["train", "--config", str(config), "--output-dir", str(tmp_path / "out"), "--steps", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "step 1/3 |" in out and "step 2/3" not in out


def test_an_unsupported_checkpoint_is_refused(synth_dir: Path, tmp_path: Path, write_config, capsys) -> None:
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"model_type": "llava"}), encoding="utf-8")
    code = main(["train", "--config", str(write_config(synth_dir, model={"path": str(checkpoint)}))])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        "train: cannot start:",
        f"  model.path: {checkpoint}: model_type 'llava' is not supported; "
        "known: qwen2_5_vl, qwen2_vl, qwen3_vl",
    ]
