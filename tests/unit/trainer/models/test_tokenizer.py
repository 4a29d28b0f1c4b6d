import doctest
import re

import pytest

from trainer.models import corpus
from trainer.models import tokenizer as tokenizer_module
from trainer.models.tokenizer import SPECIAL_TOKENS, build_tokenizer


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.mark.parametrize(
    "text",
    [
        "<think>\nFirst, 12 + 30 = 42.\n</think>\n<answer>\n\\boxed{42}\n</answer>",
        "<answer>\n[{'bbox_2d': [10, 20, 300, 400], 'label': 'dog'}]\n</answer>",
        '[{"bbox_2d": [0, 0, 1000, 1000], "label": "traffic light"}]',
        "The final answer is \\boxed{\\frac{1}{2}}.",
        "héllo 世界 🙂 \t\r\n  spaces",
        "\x00\x01 control bytes \ufeff",
        "a" * 5000,
        "'; DROP TABLE runs; -- <script>alert(1)</script>",
        "",
    ],
)
def test_round_trips_any_text(tok, text):
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text


def test_special_tokens_are_single_tokens_with_fixed_ids(tok):
    # The trainer adds special tokens first, in SPECIAL_TOKENS order: ids 0..6.
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(7))
    for token in SPECIAL_TOKENS:
        assert tok(token, add_special_tokens=False)["input_ids"] == [SPECIAL_TOKENS.index(token)]


def test_eos_pad_and_left_padding(tok):
    assert tok.eos_token == "<|im_end|>"
    assert tok.pad_token == "<|endoftext|>"
    assert tok.padding_side == "left"
    batch = tok(["a", "a b c d"], padding=True)
    assert batch["input_ids"][0][0] == tok.pad_token_id
    assert batch["attention_mask"][0][0] == 0


def test_responses_tokenize_compactly(tok):
    # Digits are split one by one (Qwen2's pattern); words, tags and LaTeX commands are merged.
    response = "<think>\nThe total is 12.\n</think>\n<answer>\n\\boxed{12}\n</answer>"
    ids = tok(response, add_special_tokens=False)["input_ids"]
    assert len(ids) < len(response) / 2
    assert "Ġtotal" in tok.convert_ids_to_tokens(tok(" total", add_special_tokens=False)["input_ids"])
    assert tok.convert_ids_to_tokens(tok("123", add_special_tokens=False)["input_ids"]) == ["1", "2", "3"]


def test_deterministic(tok):
    again = build_tokenizer()
    assert again.get_vocab() == tok.get_vocab()
    assert again.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()
    assert corpus.corpus() == corpus.corpus()


def test_chat_template_writes_image_placeholder(tok):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many?"}]},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>How many?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_save_and_reload(tmp_path):
    from transformers import AutoTokenizer

    saved = build_tokenizer(tmp_path)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert loaded.get_vocab() == saved.get_vocab()
    assert loaded.chat_template == saved.chat_template
    assert loaded.padding_side == "left"


@pytest.mark.parametrize(
    ("vocab_size", "message"),
    [
        (100, "vocab_size must be at least 263 (bytes + specials), got 100"),
        (0, "vocab_size must be at least 263 (bytes + specials), got 0"),
    ],
)
def test_rejects_tiny_vocab(vocab_size, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build_tokenizer(vocab_size=vocab_size)


def test_doctests():
    result = doctest.testmod(tokenizer_module)
    assert result.attempted > 0 and result.failed == 0
