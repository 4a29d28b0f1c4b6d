import doctest
import importlib
import re

import pytest
import torch
from PIL import Image

from trainer.rollout import RolloutPrompt, encode_prompt, replace_tokens, to_chat_items
from trainer.rollout.prompts import plain_token_id, vision_token_ids

IMG = {"type": "image"}


def _text(t):
    return {"type": "text", "text": t}


@pytest.mark.parametrize(
    ("content", "items"),
    [
        ("<image>How many?", [IMG, _text("How many?")]),
        ("How many?<image>", [_text("How many?"), IMG]),
        ("A <image> and <image> B", [_text("A "), IMG, _text(" and "), IMG, _text(" B")]),
        ("<image><image>", [IMG, IMG]),
        ("no image", [_text("no image")]),
        ("", []),
        ([IMG, _text("as is")], [IMG, _text("as is")]),
        ("<IMAGE> is not a marker", [_text("<IMAGE> is not a marker")]),
    ],
)
def test_to_chat_items(content, items):
    assert to_chat_items([{"role": "user", "content": content}]) == [{"role": "user", "content": items}]


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([{"content": "hi"}], "message 0 must be a dict with 'role' and 'content', got {'content': 'hi'}"),
        (["hi"], "message 0 must be a dict with 'role' and 'content', got 'hi'"),
        ([{"role": "user", "content": 3}], "message 0 content must be a string or a list, got int"),
    ],
)
def test_to_chat_items_rejects_bad_messages(messages, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        to_chat_items(messages)


def test_encode_prompt_sizes_and_types(tiny):
    _, processor = tiny
    prompt = RolloutPrompt(
        [{"role": "user", "content": "<image>left <image>right"}],
        [Image.new("RGB", (224, 112)), Image.new("RGB", (56, 84))],
    )
    encoded = encode_prompt(processor, prompt)
    # 224x112 -> 16x8 patches -> 32 tokens; 56x84 -> 4x6 patches -> 6 tokens.
    assert encoded.image_sizes == ((224, 112), (56, 84))
    assert encoded.image_grid_thw.tolist() == [[1, 8, 16], [1, 6, 4]]
    assert int((encoded.mm_token_type_ids == 1).sum()) == 32 + 6
    assert encoded.pixel_values.shape == (8 * 16 + 6 * 4, 3 * 2 * 14 * 14)
    assert encoded.input_ids.shape == encoded.mm_token_type_ids.shape
    text = processor.tokenizer.decode(encoded.input_ids)
    assert text.startswith("<|im_start|>user\n<|vision_start|><|image_pad|>")
    assert text.endswith("right<|im_end|>\n<|im_start|>assistant\n")


def test_encode_text_only_prompt(tiny):
    _, processor = tiny
    encoded = encode_prompt(processor, RolloutPrompt([{"role": "user", "content": "2+2?"}]))
    assert encoded.pixel_values is None and encoded.image_grid_thw is None
    assert encoded.image_sizes == ()
    assert torch.equal(encoded.mm_token_type_ids, torch.zeros_like(encoded.input_ids))


@pytest.mark.parametrize(
    ("prompt", "error", "message"),
    [
        (
            RolloutPrompt([{"role": "user", "content": "<image>x"}]),
            ValueError,
            "prompt has 1 image marker(s) but 0 image(s)",
        ),
        (
            RolloutPrompt([{"role": "user", "content": "x"}], [Image.new("RGB", (56, 56))]),
            ValueError,
            "prompt has 0 image marker(s) but 1 image(s)",
        ),
        (RolloutPrompt([]), ValueError, "prompt has no messages"),
        ({"messages": []}, TypeError, "expected a RolloutPrompt, got dict"),
    ],
)
def test_encode_prompt_rejects_bad_prompts(tiny, prompt, error, message):
    _, processor = tiny
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        encode_prompt(processor, prompt)


@pytest.mark.parametrize(
    ("ids", "forbidden", "expected"),
    [
        ([7, 5, 9, 6], [5, 6], [7, 1, 9, 1]),
        ([5, 5, 5], [5], [1, 1, 1]),
        ([7, 8], [5, 6], [7, 8]),
        ([7, 8], [], [7, 8]),
        ([], [5], []),
    ],
)
def test_replace_tokens(ids, forbidden, expected):
    source = torch.tensor(ids, dtype=torch.long)
    assert replace_tokens(source, forbidden, 1).tolist() == expected
    assert source.tolist() == ids  # a copy, the input is untouched


def test_vision_and_plain_token_ids(tiny):
    _, processor = tiny
    tok = processor.tokenizer
    assert tok.convert_ids_to_tokens(vision_token_ids(tok)) == [
        "<|vision_start|>",
        "<|vision_end|>",
        "<|image_pad|>",
        "<|video_pad|>",
    ]
    assert tok.decode([plain_token_id(tok)]) == " "


def test_doctests():
    result = doctest.testmod(importlib.import_module("trainer.rollout.prompts"))
    assert result.attempted > 0 and result.failed == 0
