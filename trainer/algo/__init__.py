"""The GRPO algorithm as pure functions, and the policy update that uses them.

- :func:`group_advantages`: (r − mean_g) / (std_g + 1e-6) per prompt group (arXiv 2402.03300);
- :func:`zero_std_groups`: the groups without a learning signal (DAPO's dynamic sampling, arXiv 2503.14476);
- :func:`policy_loss`: token-mean PPO clip, clip-higher (arXiv 2503.14476), dual clip (arXiv 1912.09729);
- :func:`kl_penalty`, :func:`entropy_from_logits`, :func:`masked_mean`;
- :func:`token_logprobs`: the training forward over response tokens;
- :func:`warmup_constant_schedule`: linear warm-up then constant LR;
- :func:`update_policy`: one rollout batch → one or several optimizer steps;
  :func:`update_policy_shard` the same on a data-parallel worker's share (:mod:`trainer.algo.shard`).
"""

from trainer.algo.advantages import group_advantages, zero_std_groups
from trainer.algo.logprobs import token_logprobs
from trainer.algo.losses import KL_ESTIMATORS, entropy_from_logits, kl_penalty, masked_mean, policy_loss
from trainer.algo.schedule import warmup_constant_factor, warmup_constant_schedule, warmup_steps
from trainer.algo.shard import Collective, Shard, UpdateTotals, assign_owners, merge_totals
from trainer.algo.update import UpdateConfig, recompute_logprobs, update_policy, update_policy_shard

__all__ = [
    "KL_ESTIMATORS",
    "Collective",
    "Shard",
    "UpdateConfig",
    "UpdateTotals",
    "assign_owners",
    "entropy_from_logits",
    "group_advantages",
    "kl_penalty",
    "masked_mean",
    "merge_totals",
    "policy_loss",
    "recompute_logprobs",
    "token_logprobs",
    "update_policy",
    "update_policy_shard",
    "warmup_constant_factor",
    "warmup_constant_schedule",
    "warmup_steps",
    "zero_std_groups",
]
