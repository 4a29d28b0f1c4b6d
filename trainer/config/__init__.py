"""Typed training configuration, presets and run specs (DESIGN.md §5).

``load_config("tiny-cpu-demo", ["algo.lr=1e-5"])`` returns a validated :class:`TrainConfig`;
``load_run_spec(uri)`` returns the :class:`RunSpec` the platform submitted.
"""

from trainer.config.errors import ConfigError, ConfigProblem
from trainer.config.loader import (
    PRESETS_DIR,
    apply_overrides,
    config_from_dict,
    config_to_yaml,
    known_presets,
    load_config,
    parse_override,
)
from trainer.config.runspec import (
    ResolvedSource,
    RunSpec,
    build_run_spec,
    check_model_path,
    load_run_spec,
    resolve_uris,
    run_spec_from_json,
)
from trainer.config.schema import (
    AlgoConfig,
    CheckpointConfig,
    DataConfig,
    DataSourceConfig,
    EvalConfig,
    GroupLrs,
    HttpTrackingConfig,
    KLConfig,
    ModelConfig,
    RemoteRewardConfig,
    RewardConfig,
    RolloutConfig,
    TrackingConfig,
    TrainConfig,
    check_iou_schedule,
)

__all__ = [
    "PRESETS_DIR",
    "AlgoConfig",
    "CheckpointConfig",
    "ConfigError",
    "ConfigProblem",
    "DataConfig",
    "DataSourceConfig",
    "EvalConfig",
    "GroupLrs",
    "HttpTrackingConfig",
    "KLConfig",
    "ModelConfig",
    "RemoteRewardConfig",
    "ResolvedSource",
    "RewardConfig",
    "RolloutConfig",
    "RunSpec",
    "TrackingConfig",
    "TrainConfig",
    "apply_overrides",
    "build_run_spec",
    "check_iou_schedule",
    "check_model_path",
    "config_from_dict",
    "config_to_yaml",
    "known_presets",
    "load_config",
    "load_run_spec",
    "parse_override",
    "resolve_uris",
    "run_spec_from_json",
]
