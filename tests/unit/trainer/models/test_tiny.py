import json
import os
import re

import pytest
import torch
from PIL import Image

from trainer.models import build_tiny_model, count_parameters, load_model, save_tiny
from trainer.models.tokenizer import IM_END, IMAGE_PAD, VIDEO_PAD, VISION_END, VISION_START

ARCHS = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]


def _image_inputs(processor, size=(224, 224)):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is 2+2?"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return processor(text=[text], images=[[Image.new("RGB", size, (200, 30, 30))]], return_tensors="pt")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("size", "low", "high"), [("tiny", 0.5e6, 0.9e6), ("small", 4e6, 6e6)])
def test_builds_with_expected_size_and_token_ids(arch, size, low, high):
    model, processor = build_tiny_model(arch, size)
    assert low < count_parameters(model) < high
    assert model.config.model_type == arch
    tok = processor.tokenizer
    assert model.config.image_token_id == tok.convert_tokens_to_ids(IMAGE_PAD)
    assert model.config.video_token_id == tok.convert_tokens_to_ids(VIDEO_PAD)
    assert model.config.vision_start_token_id == tok.convert_tokens_to_ids(VISION_START)
    assert model.config.vision_end_token_id == tok.convert_tokens_to_ids(VISION_END)
    assert model.config.text_config.eos_token_id == tok.convert_tokens_to_ids(IM_END)
    assert model.config.text_config.vocab_size == len(tok)


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_on_a_224_image(arch):
    model, processor = build_tiny_model(arch)
    inputs = _image_inputs(processor)
    # 224x224 with patch 14 and merge 2: (224/28)^2 = 64 image tokens.
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 64
    assert inputs["image_grid_thw"].tolist() == [[1, 16, 16]]
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], len(processor.tokenizer))
    assert torch.isfinite(logits).all()


def test_same_seed_same_weights_other_seed_other_weights():
    a, _ = build_tiny_model(seed=3)
    b, _ = build_tiny_model(seed=3)
    c, _ = build_tiny_model(seed=4)
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True))


def test_build_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_model(seed=0)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": "llava"}, "unknown arch 'llava'; known: qwen2_5_vl, qwen2_vl, qwen3_vl"),
        ({"size": "huge"}, "unknown size 'huge'; known: 2b, 7b, small, tiny"),
    ],
)
def test_rejects_unknown_presets(kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build_tiny_model(**kwargs)


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_round_trip(tmp_path, arch):
    model, processor = build_tiny_model(arch, seed=1)
    save_tiny(tmp_path, arch=arch, seed=1)
    assert (tmp_path / "preprocessor_config.json").is_file()
    loaded, loaded_processor = load_model(tmp_path)
    assert type(loaded) is type(model)
    for (name, expected), (_, actual) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(expected, actual), name
    assert loaded_processor.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    assert loaded_processor.chat_template == processor.chat_template
    assert loaded_processor.tokenizer.padding_side == "left"
    inputs = _image_inputs(loaded_processor)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, loaded(**inputs).logits)


def test_load_overrides_pixel_range_and_dtype(tmp_path):
    save_tiny(tmp_path)
    model, processor = load_model(tmp_path, dtype=torch.bfloat16, max_pixels=112 * 112)
    assert next(model.parameters()).dtype == torch.bfloat16
    # 224x224 is shrunk to at most 112x112 pixels: an 8x8 patch grid.
    assert _image_inputs(processor)["image_grid_thw"].tolist() == [[1, 8, 8]]
    _, small_processor = load_model(tmp_path, min_pixels=448 * 448, max_pixels=448 * 448)
    assert _image_inputs(small_processor, (56, 56))["image_grid_thw"].tolist() == [[1, 32, 32]]


def test_load_leaves_hub_offline_setting_as_it_was(tmp_path, monkeypatch):
    save_tiny(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    load_model(tmp_path)
    assert "HF_HUB_OFFLINE" not in os.environ


def test_load_rejects_missing_and_foreign_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(
        ValueError, match=r"unsupported model_type 'gpt2' in .*; known: qwen2_5_vl, qwen2_vl, qwen3_vl"
    ):
        load_model(tmp_path)


def test_load_rejects_inverted_pixel_range(tmp_path):
    save_tiny(tmp_path)
    with pytest.raises(
        ValueError, match="need 0 < min_pixels <= max_pixels, got min_pixels=50176, max_pixels=3136"
    ):
        load_model(tmp_path, min_pixels=224 * 224, max_pixels=56 * 56)
