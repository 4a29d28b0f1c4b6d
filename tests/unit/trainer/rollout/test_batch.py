import pytest
import torch

from trainer.rollout import PromptInputs, Rollout, collate

PAD = 0


def _prompt(ids, image_rows=None, grid=None, types=None):
    ids = torch.tensor(ids)
    return PromptInputs(
        input_ids=ids,
        mm_token_type_ids=torch.tensor(types) if types is not None else torch.zeros_like(ids),
        pixel_values=None if image_rows is None else torch.full((image_rows, 4), float(image_rows)),
        image_grid_thw=None if grid is None else torch.tensor([grid]),
        image_sizes=() if grid is None else ((grid[2] * 14, grid[1] * 14),),
    )


def _rollout(prompt, response, index=0):
    return Rollout(
        prompt_index=index,
        prompt=prompt,
        response_ids=torch.tensor(response),
        response_text="",
        clipped=False,
    )


def test_layout_left_padded_prompts_right_padded_responses():
    a = _prompt([11, 12, 13], image_rows=4, grid=[1, 2, 2], types=[0, 1, 0])
    b = _prompt([21], image_rows=8, grid=[1, 2, 4], types=[1])
    batch = collate([_rollout(a, [31, 32]), _rollout(b, [41, 42, 43, 44])], pad_token_id=PAD)
    # P = 3 (longest prompt), R = 4 (longest response).
    assert batch.prompt_width == 3
    assert batch.input_ids.tolist() == [[11, 12, 13, 31, 32, PAD, PAD], [PAD, PAD, 21, 41, 42, 43, 44]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1, 1]]
    assert batch.mm_token_type_ids.tolist() == [[0, 1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0]]
    assert batch.response_ids.tolist() == [[31, 32, PAD, PAD], [41, 42, 43, 44]]
    assert batch.response_mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch.pixel_values[:, 0].tolist() == [4.0] * 4 + [8.0] * 8  # images in row order
    assert batch.image_grid_thw.tolist() == [[1, 2, 2], [1, 2, 4]]
    assert set(batch.model_inputs()) == {
        "input_ids",
        "attention_mask",
        "mm_token_type_ids",
        "pixel_values",
        "image_grid_thw",
    }


def test_text_only_batch_has_no_image_inputs():
    batch = collate([_rollout(_prompt([1, 2]), [3])], pad_token_id=PAD)
    assert batch.pixel_values is None and batch.image_grid_thw is None
    assert set(batch.model_inputs()) == {"input_ids", "attention_mask", "mm_token_type_ids"}


def test_mixed_batch_keeps_only_present_images():
    batch = collate(
        [_rollout(_prompt([1]), [3]), _rollout(_prompt([2], 4, [1, 2, 2], [1]), [4])], pad_token_id=PAD
    )
    assert batch.image_grid_thw.tolist() == [[1, 2, 2]]


def test_single_rollout_model_inputs():
    rollout = _rollout(_prompt([11, 12], image_rows=4, grid=[1, 2, 2], types=[1, 0]), [31, 32, 33])
    inputs = rollout.model_inputs()
    assert inputs["input_ids"].tolist() == [[11, 12, 31, 32, 33]]
    assert inputs["mm_token_type_ids"].tolist() == [[1, 0, 0, 0, 0]]
    assert inputs["attention_mask"].tolist() == [[1, 1, 1, 1, 1]]
    assert rollout.image_size == (28, 28)
    assert _rollout(_prompt([1]), [2]).image_size is None


def test_to_moves_and_casts_pixels_only():
    batch = collate([_rollout(_prompt([1], 4, [1, 2, 2], [1]), [3])], pad_token_id=PAD).to(
        "cpu", torch.bfloat16
    )
    assert batch.pixel_values.dtype == torch.bfloat16
    assert batch.input_ids.dtype == torch.long and batch.response_mask.dtype == torch.float32


@pytest.mark.parametrize(
    ("rollouts", "message"),
    [
        ([], "cannot collate an empty list of rollouts"),
        ([_rollout(_prompt([1]), [2]), _rollout(_prompt([1]), [])], "rollout 1 has an empty response"),
    ],
)
def test_rejects_bad_input(rollouts, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        collate(rollouts, pad_token_id=PAD)
