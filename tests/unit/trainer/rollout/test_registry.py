import pytest

from trainer.rollout import (
    HFRolloutBackend,
    RolloutBackend,
    backend_names,
    build_backend,
    register_backend,
    registry,
)


def test_hf_is_registered_and_satisfies_the_interface(tiny):
    model, processor = tiny
    backend = build_backend("hf", model=model, processor=processor, max_batch_size=4)
    assert isinstance(backend, HFRolloutBackend)
    assert isinstance(backend, RolloutBackend)
    assert backend.max_batch_size == 4
    assert "hf" in backend_names()


def test_unknown_backend_lists_known_ones():
    with pytest.raises(ValueError, match=r"^unknown rollout backend 'sglang'; known: hf, vllm$"):
        build_backend("sglang")


def test_register_new_backend_and_refuse_a_second_registration(monkeypatch):
    monkeypatch.setattr(registry, "_BACKENDS", dict(registry._BACKENDS))

    @register_backend("echo")
    class Echo:
        def __init__(self, reply: str) -> None:
            self.reply = reply

        def generate(self, prompts, *, n, max_new_tokens, temperature=1.0, greedy=False, seed=None):
            return []

    assert backend_names() == ["echo", "hf", "vllm"]
    assert build_backend("echo", reply="x").reply == "x"
    with pytest.raises(ValueError, match=r"^rollout backend 'echo' is already registered$"):
        register_backend("echo")(Echo)
    with pytest.raises(ValueError, match=r"^rollout backend 'hf' is already registered$"):
        register_backend("hf")(Echo)
