"""Typed training configuration: one frozen pydantic model per YAML section (DESIGN.md §5).

Every field carries its meaning (and the paper it comes from) in ``description``, which also
lands in the JSON schema the web form is built from. Defaults are V-Triune's published
hyper-parameters ("One RL to See Them All", MiniMax 2025, and its released ``scripts/train.sh``)
unless a field says otherwise.

Validation is strict: an integer field refuses ``true`` and ``1.5``, a float refuses a string,
NaN and infinities; an unknown key is an error. Checks that need two fields raise
:func:`problem` so that the error names the exact dotted field (see ``trainer.config.errors``).
Secrets never live in a config: sections that need a token name the environment variable
that holds it.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, NoReturn

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

# Names of the parameter groups a Qwen2-VL / Qwen2.5-VL model is split into.
ModuleGroup = Literal["vit", "connector", "llm"]
TINY_ARCHS: tuple[str, ...] = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
TINY_SIZES: tuple[str, ...] = ("tiny", "small", "2b", "7b")
# V-Triune's IoU-threshold schedule names (DESIGN.md §4); fixed values and step lists also allowed.
IOU_SCHEDULE_NAMES: tuple[str, ...] = ("dynamic", "average")
IOU_THRESHOLD_RANGE: tuple[float, float] = (0.5, 0.99)
MAX_PIXELS = 8192 * 8192  # larger images are refused as decompression bombs anyway

NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,200}$"
_NAME_RE = re.compile(NAME_PATTERN)
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_HTTP_RE = re.compile(r"^https?://[^\s/?#]+[^\s]*$")

# How each string pattern above reads in an error message.
PATTERN_WORDS: dict[str, str] = {
    NAME_PATTERN: "1 to 200 letters, digits, '_', '.' or '-'",
    _ENV_RE.pattern: "an environment variable name (letters, digits and '_', not starting with a digit)",
    _HTTP_RE.pattern: "an http:// or https:// URL",
}

NonEmptyStr = Annotated[str, Field(min_length=1, max_length=4096)]
EnvVarName = Annotated[str, Field(pattern=_ENV_RE.pattern)]
IouStep = tuple[float, float]
IouSchedule = Literal["dynamic", "average"] | float | list[IouStep]


def brief(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for error messages about hostile input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def problem(field: str, message: str) -> NoReturn:
    """Raise a validation problem about ``field`` (dotted, relative to the model being validated).

    The error formatter joins the location pydantic knows with ``field``, so a check in the
    root model can still blame ``rollout.n``.
    """
    raise PydanticCustomError("triune_config", "{message}", {"field": field, "message": message})


class Section(BaseModel):
    """Base of every config section: strict types, unknown keys refused, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class GroupLrs(Section):
    """Per-module learning rates; ``null`` means "use ``algo.lr``"."""

    vit: float | None = Field(None, gt=0, description="Learning rate of the vision tower (ViT).")
    connector: float | None = Field(
        None, gt=0, description="Learning rate of the vision-language connector (the patch merger)."
    )
    llm: float | None = Field(None, gt=0, description="Learning rate of the language model.")


class ModelConfig(Section):
    """Which policy to train and how its images are sized."""

    path: NonEmptyStr = Field(
        description=(
            "Local Hugging Face checkpoint directory of a Qwen2-VL / Qwen2.5-VL / Qwen3-VL model, or "
            "`tiny:<arch>:<size>` for a random-init model built offline "
            "(arch qwen2_vl | qwen2_5_vl | qwen3_vl, size tiny | small | 2b | 7b; "
            "2b and 7b are shaped like Qwen2-VL-2B/7B). "
            "Nothing is ever downloaded from a hub."
        )
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "bfloat16", description="Parameter dtype (V-Triune trains in bfloat16 with FSDP)."
    )
    min_pixels: int = Field(
        512 * 512,
        gt=0,
        le=MAX_PIXELS,
        description="Smallest image area after resizing (V-Triune: 512², paper §4).",
    )
    max_pixels: int = Field(
        2048 * 2048,
        gt=0,
        le=MAX_PIXELS,
        description="Largest image area after resizing (V-Triune: 2048², paper §4).",
    )
    freeze: list[ModuleGroup] = Field(
        default_factory=lambda: ["vit", "connector"],
        description=(
            "Module groups kept frozen. V-Triune freezes the ViT and the connector: training the ViT "
            "made gradients explode (paper §3.3, 'ViT training instability')."
        ),
    )
    lr: GroupLrs = Field(default_factory=GroupLrs, description="Per-group learning rates.")
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass: less memory, about a third more compute.",
    )
    attention: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa",
        description=(
            "Attention kernels of the language model and the vision tower: `sdpa` (torch's, CPU or GPU), "
            "`eager` (plain matrix products), or `flash_attention_2` (GPU with the flash-attn package; "
            "with algo.remove_padding its variable-length kernels skip the padding entirely)."
        ),
    )

    @field_validator("path")
    @classmethod
    def _tiny_path(cls, value: str) -> str:
        if value.startswith("tiny:"):
            parts = value.split(":")
            if len(parts) != 3 or parts[1] not in TINY_ARCHS or parts[2] not in TINY_SIZES:
                problem(
                    "",
                    f"a tiny model is written tiny:<arch>:<size> with arch in {', '.join(TINY_ARCHS)} "
                    f"and size in {', '.join(TINY_SIZES)}; got {value!r}",
                )
        return value

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.max_pixels < self.min_pixels:
            problem(
                "max_pixels",
                f"must be >= model.min_pixels ({self.min_pixels}), got {self.max_pixels}",
            )
        if len(set(self.freeze)) != len(self.freeze):
            problem("freeze", f"lists a group twice: {self.freeze}; list each of vit, connector, llm once")
        if set(self.freeze) == {"vit", "connector", "llm"}:
            problem("freeze", "freezes every group, so nothing would be trained; leave llm out of it")
        return self

    @property
    def is_tiny(self) -> bool:
        """True when ``path`` names a random-init tiny model rather than a checkpoint."""
        return self.path.startswith("tiny:")


class DataSourceConfig(Section):
    """One entry of the training mixture."""

    name: str = Field(
        description="Name of the source in the mixture (letters, digits, '_', '.', '-'; at most 200)."
    )
    train: list[NonEmptyStr] = Field(
        min_length=1,
        description=(
            "Training files: parquet (Orsta-Data-47k layout) or JSONL/JSONL.gz, as paths or fsspec URIs; "
            "glob patterns are expanded when the run spec is built."
        ),
    )
    test: list[NonEmptyStr] = Field(
        default_factory=list,
        description="Evaluation files; when empty, data.test_fraction of the training rows is held out.",
    )
    weight: float = Field(1.0, gt=0, description="Mixture weight; sources are drawn in proportion to it.")
    images: NonEmptyStr | None = Field(
        None, description="Directory or archive URI that image paths of JSONL rows are relative to."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            problem(
                "",
                f"must be 1 to 200 letters, digits, '_', '.' or '-', got {brief(value)}",
            )
        return value


class DataConfig(Section):
    """Where samples come from and how prompts are built."""

    sources: list[DataSourceConfig] = Field(
        min_length=1, description="The sources mixed into every step (V-Triune mixes 8 tasks)."
    )
    root: NonEmptyStr | None = Field(
        None,
        description=(
            "Directory or URI that relative file names in sources are resolved against; "
            "null = the working directory."
        ),
    )
    prompt_pool: bool = Field(
        True,
        description=(
            "Prompt-pool augmentation of mathverify samples: a random step-by-step sentence and a "
            "random 'answer in \\boxed{}' sentence (V-Triune, paper §3.1)."
        ),
    )
    test_fraction: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Fraction of a source's training rows held out for evaluation when it has no test files.",
    )
    max_prompt_length: int = Field(
        8192,
        gt=0,
        le=1 << 20,
        description="Longest prompt in tokens, image tokens included (V-Triune train.sh: 8192).",
    )
    box_coordinates: Literal["pixel", "relative1000"] = Field(
        "pixel",
        description=(
            "How the model writes boxes: `pixel` (Qwen2.5-VL: absolute pixels of the resized image, "
            "normalised to 0-1000 before scoring) or `relative1000` (Qwen2-VL: already on 0-1000)."
        ),
    )

    @model_validator(mode="after")
    def _unique_names(self) -> DataConfig:
        seen: set[str] = set()
        for index, source in enumerate(self.sources):
            if source.name in seen:
                problem(f"sources[{index}].name", f"{source.name!r} is used by an earlier source; rename one")
            seen.add(source.name)
        return self


class RolloutConfig(Section):
    """How responses are sampled."""

    backend: Literal["hf", "vllm"] = Field(
        "hf", description="Generation engine: `hf` (transformers generate, CPU or GPU) or `vllm` (GPU)."
    )
    n: int = Field(8, gt=0, le=1024, description="Responses per prompt, the GRPO group size (V-Triune: 8).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (V-Triune: 1.0).")
    max_response_length: int = Field(
        2048,
        gt=0,
        le=1 << 20,
        description="Longest response in tokens; a longer one is cut (V-Triune: 2048).",
    )
    micro_batch_size: int = Field(
        64,
        gt=0,
        le=65536,
        description="Sequences generated together; lower it when generation runs out of memory.",
    )
    prompts_per_step: int = Field(
        1024,
        gt=0,
        le=1 << 20,
        description="Prompts per training step, before the n-fold expansion (V-Triune: 1024).",
    )
    gpu_memory_utilization: float | None = Field(
        None,
        gt=0,
        le=1,
        description=(
            "With backend vllm: the share of the GPU's memory vLLM may take for its weights, "
            "activations and KV cache while it generates (it sleeps during the update); null: 0.5."
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> RolloutConfig:
        if self.gpu_memory_utilization is not None and self.backend != "vllm":
            problem("gpu_memory_utilization", f"needs rollout.backend vllm, got backend {self.backend}")
        return self


class KLConfig(Section):
    """Optional KL penalty to a frozen reference policy (off in V-Triune, paper §4)."""

    kind: Literal["mse", "k1", "k3"] | None = Field(
        None, description="KL estimator: `k1` = log-ratio, `k3` = Schulman's unbiased estimator, `mse`."
    )
    coef: float = Field(0.0, ge=0, description="Weight of the KL term in the loss.")

    @model_validator(mode="after")
    def _check(self) -> KLConfig:
        if self.kind is None and self.coef > 0:
            problem(
                "coef", f"is {self.coef} but algo.kl.kind is null; set kind to mse, k1 or k3, or coef to 0"
            )
        if self.kind is not None and self.coef == 0:
            problem("coef", f"must be > 0 when algo.kl.kind is {self.kind!r}; set it, or set kind to null")
        return self


MAX_REFILL_RETRIES = 16


class DynamicSamplingConfig(Section):
    """DAPO's dynamic sampling (arXiv 2503.14476, §3.2): no update on groups without a learning signal."""

    enabled: bool = Field(
        False,
        description=(
            "Leave out of the update every group (the n responses to one prompt) whose final rewards "
            "are all equal, and sample a fresh prompt of the same source in its place. Off in V-Triune."
        ),
    )
    max_retries: int = Field(
        2,
        description=(
            "Rounds of refills per step; a group still all equal after the last one is dropped from "
            "the update without a replacement. 0 = drop only."
        ),
    )

    @field_validator("max_retries")
    @classmethod
    def _retries(cls, value: int) -> int:
        if not 0 <= value <= MAX_REFILL_RETRIES:
            problem(
                "",
                f"must be between 0 and {MAX_REFILL_RETRIES} (each retry generates again for the groups "
                f"it replaces), got {value}",
            )
        return value


class AlgoConfig(Section):
    """The policy-gradient objective and the optimiser."""

    adv_estimator: Literal["grpo"] = Field(
        "grpo", description="Advantage estimator: GRPO group normalisation (arXiv 2402.03300)."
    )
    advantage_sign: Literal[1, -1] = Field(
        1,
        description=(
            "Multiplies every advantage. Keep 1. -1 is a control experiment: it trains the policy away "
            "from the rewarded responses, so a gain seen with 1 and not with -1 comes from the reward "
            "signal rather than from drift or evaluation noise."
        ),
    )
    lr: float = Field(1e-6, gt=0, description="AdamW learning rate (V-Triune: 1e-6).")
    warmup_ratio: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="Linear warm-up over this fraction of total_steps, then constant (V-Triune).",
    )
    weight_decay: float = Field(
        0.01, ge=0, description="AdamW weight decay (verl's default, used by V-Triune)."
    )
    clip_low: float = Field(
        0.2, gt=0, lt=1, description="PPO clip ε_low: the ratio is kept above 1 - ε_low (arXiv 1707.06347)."
    )
    clip_high: float = Field(
        0.28,
        gt=0,
        description="Clip-higher ε_high: the ratio is kept below 1 + ε_high (DAPO, arXiv 2503.14476).",
    )
    dual_clip_c: float | None = Field(
        None,
        gt=1,
        description="Dual-clip bound c for negative advantages, null = off (arXiv 1912.09729 uses c = 3).",
    )
    kl: KLConfig = Field(default_factory=KLConfig, description="KL penalty to a reference policy.")
    entropy_coef: float = Field(0.0, ge=0, description="Entropy bonus weight (V-Triune: 0).")
    ppo_epochs: int = Field(1, gt=0, description="Passes over each rollout batch.")
    mini_batch_size: int | None = Field(
        None,
        gt=0,
        description=(
            "Prompts per optimiser step; null = rollout.prompts_per_step, i.e. one on-policy update per "
            "rollout batch (V-Triune). Smaller values give several off-policy updates per batch."
        ),
    )
    micro_batch_size: int = Field(
        16, gt=0, description="Responses per forward/backward pass (gradient accumulation; V-Triune: 16)."
    )
    logprob_micro_batch_size: int | None = Field(
        None,
        gt=0,
        description="Responses per forward of the log-prob recompute (no backward: more fit); null: same.",
    )
    group_by_length: bool = Field(
        False,
        description=(
            "Form micro-batches of responses of like length (longest first) instead of in batch order: "
            "the same optimiser steps with far less padding (verl's dynamic batching, by count)."
        ),
    )
    micro_batch_tokens: int | None = Field(
        None,
        gt=0,
        le=1 << 24,
        description=(
            "Most tokens in a micro-batch, as the forward sees them (the real tokens with "
            "remove_padding, else rows x the longest prompt + response); with long-tailed lengths, "
            "short responses share a pass and long ones get their own (verl's dynamic batch size). "
            "micro_batch_size still caps the sequences; one longer than this goes alone. null: no limit."
        ),
    )
    remove_padding: bool = Field(
        False,
        description=(
            "Run each micro-batch's forward on its real tokens only, packed into one row (verl's "
            "use_remove_padding): no compute on pad tokens, the same log-probs. Attention is "
            "block-diagonal: variable-length kernels with flash_attention_2, a mask with sdpa."
        ),
    )
    grad_clip: float = Field(1.0, gt=0, description="Global gradient-norm clip (V-Triune: 1.0).")
    max_nan_steps: int = Field(
        3,
        ge=0,
        description="Steps in a row with a NaN/Inf loss that are skipped before the run stops with an error.",
    )
    dynamic_sampling: DynamicSamplingConfig = Field(
        default_factory=DynamicSamplingConfig,
        description="Refill or drop groups whose rewards are all equal (DAPO); off by default.",
    )


class RemoteRewardConfig(Section):
    """Remote reward service (V-Triune scores rewards on a separate service)."""

    urls: list[Annotated[str, Field(pattern=_HTTP_RE.pattern, max_length=2048)]] = Field(
        min_length=1, description="Base URLs of the reward service workers (http:// or https://)."
    )
    token_env: EnvVarName = Field(
        "TRIUNE_REWARD_TOKEN", description="Environment variable holding the service's bearer token."
    )
    retries: int = Field(2, ge=0, description="Retries of a failed request before the sample scores 0.")
    timeout_s: float = Field(60.0, gt=0, description="Time limit of one request in seconds.")


class RewardConfig(Section):
    """How responses are scored (DESIGN.md §4)."""

    iou_schedule: IouSchedule = Field(
        "dynamic",
        description=(
            "IoU threshold ε of the detection reward: `dynamic` (V-Triune: 0.85 up to 10 % of training, "
            "0.95 up to 25 %, then 0.99), a fixed value in [0.5, 0.99], `average` (mean over 0.50…0.95 "
            "and 0.99), or a list of [fraction, threshold] steps: the first step whose fraction is >= "
            "step/total_steps applies, the last one after that."
        ),
    )
    workers: int | None = Field(None, gt=0, description="Scoring processes; null = one per CPU core.")
    timeout_s: float = Field(
        10.0, gt=0, description="Time limit per sample; a timeout scores 0 and counts in reward_errors."
    )
    remote: RemoteRewardConfig | None = Field(
        None, description="Score on a remote service instead of locally."
    )
    actors: int = Field(
        0,
        ge=0,
        le=4096,
        description=(
            "Scoring actors on the Ray cluster (engine.kind ray), each with a pool of `workers` processes; "
            "a step's responses are shared among them. 0 = score in the driver's own pool."
        ),
    )
    cpus_per_actor: float = Field(1.0, gt=0, le=1024, description="CPUs reserved for each scoring actor.")

    @field_validator("iou_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: object) -> object:
        return check_iou_schedule(value)


class EvalConfig(Section):
    """Greedy evaluation on each source's test split."""

    every: int = Field(10, ge=0, description="Evaluate every N steps; 0 = never during training.")
    before_training: bool = Field(True, description="Evaluate once before the first step (V-Triune does).")
    max_samples_per_source: int | None = Field(
        None, gt=0, description="Cap on test samples per source; null = all of them."
    )


class WarmStartConfig(Section):
    """Supervised steps on the sources' ground truths that the run does itself before GRPO."""

    steps: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="Warm-start steps before the first GRPO step; 0 = none (start from model.path as is).",
    )
    lr: float = Field(2e-3, gt=0, le=1.0, description="AdamW learning rate of the warm-start.")
    batch_size: int = Field(16, ge=1, le=65_536, description="Samples per warm-start step.")
    target_accuracy: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Stop training a source once its greedy accuracy on held-out training rows reaches "
        "this (GRPO then starts it with headroom); null = train every source for all the steps.",
    )
    eval_every: int = Field(200, ge=1, le=1_000_000, description="Steps between those evaluations.")
    eval_rows: int = Field(48, ge=1, le=10_000, description="Training rows held out per source for them.")


class CheckpointConfig(Section):
    """Periodic checkpoints of model, optimiser, scheduler, RNG and data position."""

    every: int = Field(50, ge=0, description="Save every N steps; 0 = only at the end.")
    keep_last: int | None = Field(2, gt=0, description="Checkpoints kept on disk; null = all.")
    dir: NonEmptyStr | None = Field(
        None, description="Where checkpoints go; null = <output_dir>/checkpoints."
    )


class HttpTrackingConfig(Section):
    """Metrics over HTTP to the platform: ``POST <url>/api/v1/runs/<run_id>/metrics/``."""

    url: str = Field(pattern=_HTTP_RE.pattern, max_length=2048, description="Base URL of the platform.")
    run_id: str = Field(pattern=NAME_PATTERN, description="Run id the metrics belong to.")
    token_env: EnvVarName = Field(
        "TRIUNE_RUN_TOKEN", description="Environment variable holding the run-scoped bearer token."
    )
    batch_size: int = Field(1000, gt=0, description="Most points per request.")
    timeout_s: float = Field(10.0, gt=0, description="Time limit of one request in seconds.")
    retry_interval_s: float = Field(
        15.0, ge=0, description="After a failure, wait this long before trying the server again."
    )
    close_wait_s: float = Field(
        120.0,
        ge=0,
        le=86_400,
        description=(
            "At the end of the run, keep trying this long to deliver points still spooled (the platform "
            "being away when the run ends); 0 = one last try."
        ),
    )
    spool: NonEmptyStr = Field(
        "metrics_spool.jsonl",
        description="Points not yet delivered, replayed in order later (relative to output_dir).",
    )


class TrackingConfig(Section):
    """Where metrics go."""

    jsonl: NonEmptyStr | None = Field(
        "metrics.jsonl", description="Append-only JSONL of every point (relative to output_dir); null = off."
    )
    console: bool = Field(True, description="Print a compact progress line per step.")
    http: HttpTrackingConfig | None = Field(None, description="Send metrics to the platform.")


class EngineConfig(Section):
    """Where the policy trains: this process, or data-parallel workers on a Ray cluster."""

    kind: Literal["local", "ray"] = Field(
        "local",
        description=(
            "`local`: one process (CPU or one GPU). `ray`: `workers` Ray actors, each holding a share of "
            "every rollout batch; gradients are summed over them (gloo on CPU, NCCL on GPU)."
        ),
    )
    workers: int = Field(1, gt=0, le=4096, description="Training workers (engine.kind ray).")
    cpus_per_worker: float = Field(1.0, gt=0, le=1024, description="CPUs reserved for each worker.")
    gpus_per_worker: float = Field(
        0.0, ge=0, le=16, description="GPUs reserved for each worker; 0 trains on CPU with gloo."
    )
    sharding: Literal["none", "fsdp", "deepspeed"] = Field(
        "none",
        description=(
            "`none`: every worker holds the whole model and optimizer (data parallel). `fsdp`: torch "
            "FSDP2 shards parameters, gradients and optimizer states over the workers. `deepspeed`: "
            "DeepSpeed ZeRO (stage `zero_stage`) shards them; needs `pip install 'triune[gpu]'`."
        ),
    )
    zero_stage: int | None = Field(
        None,
        description=(
            "With sharding deepspeed: ZeRO stage 2 (gradients and optimizer states sharded) or 3 "
            "(parameters too); null: 3."
        ),
    )
    offload: bool = Field(
        False,
        description="With sharding fsdp or deepspeed: keep parameters and optimizer states in CPU memory.",
    )
    timeout_s: float = Field(
        600.0,
        gt=0,
        le=86_400,
        description="Longest wait for a collective operation or a worker before the step fails.",
    )
    address: str | None = Field(
        None,
        max_length=2048,
        description="Ray cluster to join; null: RAY_ADDRESS, or the cluster this job runs in, or a new one.",
    )

    @model_validator(mode="after")
    def _check(self) -> EngineConfig:
        if self.kind == "local" and self.workers != 1:  # local + fsdp: one FSDP worker in this process
            problem("workers", f"engine.kind local is one process; use engine.kind ray for {self.workers}")
        if self.offload and self.sharding == "none":
            problem("offload", "needs engine.sharding fsdp or deepspeed")
        if self.zero_stage is not None and self.sharding != "deepspeed":
            problem("zero_stage", f"needs engine.sharding deepspeed, got sharding {self.sharding}")
        if self.zero_stage is not None and self.zero_stage not in (2, 3):
            problem("zero_stage", f"must be 2 or 3 (DeepSpeed ZeRO stages), got {self.zero_stage}")
        return self


class TrainConfig(Section):
    """A whole training run."""

    model: ModelConfig
    data: DataConfig
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    algo: AlgoConfig = Field(default_factory=AlgoConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    warm_start: WarmStartConfig = Field(default_factory=WarmStartConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    total_steps: int = Field(
        gt=0, le=10_000_000, description="Training steps; schedules (warm-up, IoU ε) are relative to it."
    )
    seed: int = Field(0, ge=0, description="Seed of data order, sampling and initialisation.")
    output_dir: NonEmptyStr = Field(
        "var/runs/default", description="Directory for checkpoints, metric files and logs."
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.algo.adv_estimator == "grpo" and self.rollout.n < 2:
            problem(
                "rollout.n",
                f"GRPO needs at least 2 responses per prompt (a group of one has advantage 0), "
                f"got {self.rollout.n}; set rollout.n >= 2",
            )
        if self.engine.kind == "ray" and self.rollout.prompts_per_step < self.engine.workers:
            problem(
                "engine.workers",
                f"each worker samples at least one prompt a step: {self.engine.workers} workers need "
                f"rollout.prompts_per_step >= {self.engine.workers}, got {self.rollout.prompts_per_step}",
            )
        if self.reward.actors and self.engine.kind != "ray":
            problem(
                "reward.actors",
                f"scoring actors run on a Ray cluster: set engine.kind ray, or reward.actors 0 (got "
                f"{self.reward.actors})",
            )
        if self.reward.actors and self.reward.remote is not None:
            problem("reward.actors", "score either on scoring actors or on reward.remote, not both")
        mini = self.algo.mini_batch_size
        if mini is not None and self.rollout.prompts_per_step % mini != 0:
            problem(
                "algo.mini_batch_size",
                f"must divide rollout.prompts_per_step ({self.rollout.prompts_per_step}), got {mini}",
            )
        return self

    @property
    def prompts_per_update(self) -> int:
        """Prompts per optimiser step (``algo.mini_batch_size`` resolved)."""
        return self.algo.mini_batch_size or self.rollout.prompts_per_step


def check_iou_schedule(value: object) -> object:
    """Validate an IoU-threshold schedule and return it in canonical form.

    Accepted: ``"dynamic"``, ``"average"``, a number in [0.5, 0.99] (DESIGN.md §4), or a list of
    ``[fraction, threshold]`` pairs with fractions strictly increasing in [0, 1] and thresholds
    in [0.5, 0.99]: the threshold of the first pair whose fraction is >= step / total_steps
    applies, the last one after that (the semantics of ``trainer.rewards.iou_threshold``).
    """
    low, high = IOU_THRESHOLD_RANGE
    words = "must be dynamic, average, a number or a non-empty list of [fraction, threshold]"
    if isinstance(value, str):
        if value not in IOU_SCHEDULE_NAMES:
            problem("", f"{words}; got {brief(value)}")
        return value
    if isinstance(value, bool) or value is None:
        problem("", f"{words}; got {value!r}")
    if isinstance(value, int | float):
        if not low <= value <= high:
            problem("", f"a fixed IoU threshold must be in [{low}, {high}], got {value}")
        return float(value)
    if not isinstance(value, list | tuple) or not value:
        problem("", f"{words}; got {brief(value)}")
    if len(value) > 100:
        problem("", f"must have at most 100 steps, got {len(value)}")
    steps: list[IouStep] = []
    for index, item in enumerate(value):
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or any(isinstance(x, bool) or not isinstance(x, int | float) for x in item)
        ):
            problem(f"[{index}]", f"must be a pair [fraction, threshold] of numbers, got {brief(item)}")
        fraction, threshold = float(item[0]), float(item[1])
        if not 0.0 <= fraction <= 1.0:
            problem(f"[{index}]", f"fraction must be in [0, 1], got {fraction}")
        if steps and fraction <= steps[-1][0]:
            problem(f"[{index}]", f"fractions must increase strictly, got {fraction} after {steps[-1][0]}")
        if not low <= threshold <= high:
            problem(f"[{index}]", f"threshold must be in [{low}, {high}], got {threshold}")
        steps.append((fraction, threshold))
    return steps
