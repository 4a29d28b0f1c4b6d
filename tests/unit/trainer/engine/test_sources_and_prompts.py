"""Reading sources (held-out test rows, errors naming the file) and building prompts from rows."""

from __future__ import annotations

import pytest

from trainer.config import ResolvedSource
from trainer.data.images import ImageError
from trainer.data.prompt_pool import (
    BOXED_SENTENCES,
    STEP_SENTENCES,
    TAGGED_BOXED_SENTENCES,
    TAGGED_STEP_SENTENCES,
    PromptPool,
)
from trainer.data.reader import write_parquet
from trainer.data.synth import generate_rows
from trainer.engine.errors import PreflightError
from trainer.engine.prompts import longest_augmentation, prepare_item, rollout_prompt
from trainer.engine.sources import load_source, load_sources


@pytest.fixture(scope="module")
def rows():
    return list(generate_rows("math", 0, 20, image_size=56))


@pytest.fixture
def math_file(tmp_path, rows):
    path = tmp_path / "train_math_m_20.parquet"
    write_parquet(rows, str(path))
    return str(path)


def test_a_source_without_test_files_holds_out_test_fraction(math_file) -> None:
    whole = load_source(ResolvedSource(name="m", weight=2.0, train=[math_file]))
    assert (len(whole.train), len(whole.test), whole.weight) == (20, 0, 2.0)
    split = load_source(ResolvedSource(name="m", weight=1.0, train=[math_file]), test_fraction=0.5, seed=0)
    assert len(split.train) + len(split.test) == 20 and 0 < len(split.test) < 20
    # The same seed holds out the same rows; origins still point at the file's row numbers.
    again = load_source(ResolvedSource(name="m", weight=1.0, train=[math_file]), test_fraction=0.5, seed=0)
    assert [r["extra_info"]["id"] for r in again.test] == [r["extra_info"]["id"] for r in split.test]
    numbers = sorted(n for _, n in split.train_origin + split.test_origin)
    assert numbers == list(range(1, 21))
    assert split.where("test", 0) == f"m test (train_math_m_20.parquet, row {split.test_origin[0][1]})"


def test_test_files_are_used_as_given(math_file) -> None:
    data = load_source(
        ResolvedSource(name="m", weight=1.0, train=[math_file], test=[math_file]), test_fraction=0.5
    )
    assert (len(data.train), len(data.test)) == (20, 20)


def test_unreadable_files_are_reported_per_source(tmp_path, math_file) -> None:
    broken = tmp_path / "train_math_b_1.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    empty = tmp_path / "train_math_e_0.parquet"
    write_parquet([], str(empty))
    with pytest.raises(PreflightError) as caught:
        load_sources(
            [
                ResolvedSource(name="ok", weight=1.0, train=[math_file]),
                ResolvedSource(name="broken", weight=1.0, train=[str(broken)]),
                ResolvedSource(name="empty", weight=1.0, train=[str(empty)]),
            ]
        )
    problems = [str(p) for p in caught.value.problems]
    assert len(problems) == 2
    assert problems[0].startswith(f"broken: {broken}: not a readable parquet file")
    assert problems[1] == "empty: has no training rows; give it at least one"
    assert str(caught.value).startswith("data check failed:\n  broken: ")


def test_rollout_prompt_resizes_images_into_the_pixel_range(rows) -> None:
    # A 56 x 56 image with min_pixels 84 * 84 grows onto the 28-pixel grid: 84 x 84.
    prompt = rollout_prompt(rows[0], min_pixels=84 * 84, max_pixels=112 * 112)
    assert [image.size for image in prompt.images] == [(84, 84)]
    assert prompt.messages == rows[0]["prompt"]


def test_rollout_prompt_refuses_bad_images(rows) -> None:
    bad = rows[0] | {"images": [{"bytes": b"not an image", "path": "x.png"}]}
    with pytest.raises(ImageError, match="not a decodable image"):
        rollout_prompt(bad, min_pixels=784, max_pixels=12544)
    pathless = rows[0] | {"images": [{"bytes": None, "path": "x.png"}]}
    with pytest.raises(ValueError, match="has no bytes"):
        rollout_prompt(pathless, min_pixels=784, max_pixels=12544)


def test_prepare_item_augments_mathverify_rows_by_key(rows) -> None:
    pool = PromptPool(seed=0)
    first = prepare_item("m", rows[0], key=5, pool=pool, min_pixels=784, max_pixels=12544)
    again = prepare_item("m", rows[0], key=5, pool=pool, min_pixels=784, max_pixels=12544)
    plain = prepare_item("m", rows[0], key=5, pool=None, min_pixels=784, max_pixels=12544)
    assert first.prompt.messages == again.prompt.messages != plain.prompt.messages
    assert plain.prompt.messages == rows[0]["prompt"]
    assert (first.source, first.verifier) == ("m", "mathverify")
    assert (
        rows[0]["prompt"][0]["content"].startswith("<image>")
        and "\n\n" not in rows[0]["prompt"][0]["content"]
    )


@pytest.mark.parametrize(
    ("format_ratio", "steps", "boxed"),
    [(0.1, TAGGED_STEP_SENTENCES, TAGGED_BOXED_SENTENCES), (0.0, STEP_SENTENCES, BOXED_SENTENCES)],
)
def test_longest_augmentation_picks_the_longest_sentence_of_each_list(
    rows, format_ratio, steps, boxed
) -> None:
    row = rows[0] | {"reward_model": rows[0]["reward_model"] | {"format_ratio": format_ratio}}
    content = longest_augmentation(row, len)["prompt"][0]["content"]
    assert content.endswith(f"\n\n{max(steps, key=len)} {max(boxed, key=len)}")
