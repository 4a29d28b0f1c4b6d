import doctest
import importlib
import re

import pytest
import torch
from PIL import Image

from trainer.models import build_tiny_model
from trainer.models.freeze import GROUPS, freeze, group_of, layer_of, module_groups, param_groups


@pytest.mark.parametrize(
    ("name", "group", "layer"),
    [
        # transformers 5 layout
        ("model.visual.patch_embed.proj.weight", "vit", "vision.patch_embed"),
        ("model.visual.blocks.0.attn.qkv.weight", "vit", "vision.0"),
        ("model.visual.blocks.31.mlp.fc2.bias", "vit", "vision.31"),
        ("model.visual.merger.ln_q.weight", "connector", "connector.merger"),
        ("model.visual.merger.mlp.2.weight", "connector", "connector.merger"),
        ("model.language_model.embed_tokens.weight", "llm", "language.embed_tokens"),
        ("model.language_model.layers.0.self_attn.q_proj.weight", "llm", "language.0"),
        ("model.language_model.layers.27.mlp.down_proj.weight", "llm", "language.27"),
        ("model.language_model.norm.weight", "llm", "language.norm"),
        ("lm_head.weight", "llm", "language.lm_head"),
        # transformers 4 / hub checkpoint layout
        ("visual.blocks.3.norm1.weight", "vit", "vision.3"),
        ("visual.merger.mlp.0.bias", "connector", "connector.merger"),
        ("model.layers.5.input_layernorm.weight", "llm", "language.5"),
        ("model.embed_tokens.weight", "llm", "language.embed_tokens"),
        ("model.norm.weight", "llm", "language.norm"),
        # something unexpected
        ("value_head.weight", "llm", "other"),
    ],
)
def test_group_and_layer_of(name, group, layer):
    assert group_of(name) == group
    assert layer_of(name) == layer


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_every_parameter_has_a_group_and_a_named_layer(arch):
    model, _ = build_tiny_model(arch)
    grouped = module_groups(model)
    assert set(grouped) == set(GROUPS)
    assert all(grouped[group] for group in GROUPS)
    assert sum(len(v) for v in grouped.values()) == len(list(model.parameters()))
    layers = {layer_of(name) for name, _ in model.named_parameters()}
    # 2 vision blocks + 2 decoder layers; lm_head is tied to embed_tokens, so listed once.
    # Qwen3-VL adds learned absolute positions to the tower (its DeepStack mergers are connectors).
    extra = {"vision.pos_embed"} if arch == "qwen3_vl" else set()
    assert (
        layers
        == {
            "vision.patch_embed",
            "vision.0",
            "vision.1",
            "connector.merger",
            "language.embed_tokens",
            "language.0",
            "language.1",
            "language.norm",
        }
        | extra
    )


def test_freeze_is_declarative():
    model, _ = build_tiny_model()
    counts = freeze(model, ["vit", "connector"])
    assert counts["vit"] == 0 and counts["connector"] == 0 and counts["llm"] > 0
    for name, param in model.named_parameters():
        assert param.requires_grad == (group_of(name) == "llm"), name
    counts = freeze(model, [])
    assert all(p.requires_grad for p in model.parameters())
    assert counts["vit"] == sum(p.numel() for _, p in module_groups(model)["vit"])


@pytest.mark.parametrize(
    ("groups", "error", "message"),
    [
        (["vit", "decoder"], ValueError, "unknown module group(s) decoder; known: vit, connector, llm"),
        (["ViT"], ValueError, "unknown module group(s) ViT; known: vit, connector, llm"),
        ("vit", TypeError, "groups must be a collection of group names, not the string 'vit'"),
    ],
)
def test_freeze_rejects_bad_groups(groups, error, message):
    model, _ = build_tiny_model()
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        freeze(model, groups)


def test_param_groups_skip_frozen_and_carry_lrs():
    model, _ = build_tiny_model()
    freeze(model, ["vit"])
    groups = param_groups(model, {"vit": 1.0, "connector": 2e-5, "llm": 1e-6}, weight_decay=0.01)
    assert [g["name"] for g in groups] == ["connector", "llm"]
    assert [g["lr"] for g in groups] == [2e-5, 1e-6]
    assert all(g["weight_decay"] == 0.01 for g in groups)
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    ("frozen", "lrs", "message"),
    [
        (
            ["vit", "connector"],
            {"llm": 1e-6, "lm": 1.0},
            "unknown module group(s) lm in lrs; known: vit, connector, llm",
        ),
        (["vit", "connector"], {}, "group 'llm' has trainable parameters but no learning rate in lrs"),
        (["vit", "connector"], {"llm": -1.0}, "learning rate of 'llm' must be a number >= 0, got -1.0"),
        (["vit", "connector"], {"llm": "1e-6"}, "learning rate of 'llm' must be a number >= 0, got '1e-6'"),
        (["vit", "connector", "llm"], {"llm": 1e-6}, "no trainable parameters: every module group is frozen"),
    ],
)
def test_param_groups_reject_bad_lrs(frozen, lrs, message):
    model, _ = build_tiny_model()
    freeze(model, frozen)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        param_groups(model, lrs)


def _loss(model, processor):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Count."}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=[[Image.new("RGB", (56, 56), (1, 2, 3))]], return_tensors="pt")
    return model(**inputs).logits.square().mean()


def test_frozen_parameters_bit_identical_after_a_step():
    model, processor = build_tiny_model()
    freeze(model, ["vit", "connector"])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(param_groups(model, {"llm": 1e-2}), weight_decay=0.1)
    _loss(model, processor).backward()
    optimizer.step()
    for name, param in model.named_parameters():
        if group_of(name) == "llm":
            assert not torch.equal(param, before[name]), name
        else:
            assert param.grad is None, name
            assert torch.equal(param, before[name]), name


def test_per_group_learning_rates_applied():
    # Plain SGD: p_new = p − lr·grad, so (p − p_new) / grad recovers each group's lr.
    model, processor = build_tiny_model()
    freeze(model, ["vit"])
    lrs = {"connector": 0.5, "llm": 0.125}
    optimizer = torch.optim.SGD(param_groups(model, lrs))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    _loss(model, processor).backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    optimizer.step()
    for name, param in model.named_parameters():
        if name not in grads:
            continue
        lr = lrs[group_of(name)]
        assert torch.allclose(before[name] - param.detach(), lr * grads[name], atol=1e-7), name


def test_doctests():
    # The package re-exports the function freeze(), which shadows the submodule's attribute.
    result = doctest.testmod(importlib.import_module("trainer.models.freeze"))
    assert result.attempted > 0 and result.failed == 0
