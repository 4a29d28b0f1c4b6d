"""Synthetic data and small configs for the training command's tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from trainer.config.loader import read_config_data
from trainer.data.reader import iter_samples, write_parquet
from trainer.data.synth import generate_dataset

SOURCES = ("synth_math", "synth_detection")


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every synthetic task, 8 rows per source (6 train, 2 test), 56-pixel images."""
    out = tmp_path_factory.mktemp("synth")
    generate_dataset(str(out), per_source=8, image_size=56)
    return out


def small_config(data_root: Path, sources: Sequence[str] = SOURCES, **sections: dict[str, Any]) -> dict:
    """The tiny-cpu-demo preset restricted to ``sources`` and sized for a test (2 prompts x 2, 12 tokens)."""
    data = read_config_data("tiny-cpu-demo")
    data["data"]["root"] = str(data_root)
    data["data"]["sources"] = [s for s in data["data"]["sources"] if s["name"] in sources]
    data["rollout"].update(prompts_per_step=2, n=2, max_response_length=12)
    data["eval"].update(every=0, before_training=False, max_samples_per_source=1)
    data["total_steps"] = 3
    for section, values in sections.items():
        if isinstance(data.get(section), dict):
            data[section].update(values)
        else:
            data[section] = values
    return data


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write ``small_config(...)`` as YAML and return its path."""

    def write(data_root: Path, sources: Sequence[str] = SOURCES, **sections: dict[str, Any]) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(small_config(data_root, sources, **sections)), encoding="utf-8")
        return path

    return write


@pytest.fixture
def copy_data(tmp_path: Path, synth_dir: Path) -> Callable[..., Path]:
    """Copy the synthetic files of ``sources`` to a new directory, passing each row through ``edit``.

    ``edit(file_name, row_number, row)`` returns the row to write (row numbers start at 1).
    """

    def copy(edit: Callable[[str, int, dict], dict], sources: Sequence[str] = SOURCES) -> Path:
        out = tmp_path / "data"
        out.mkdir()
        for path in sorted(synth_dir.glob("*.parquet")):
            if not any(
                path.name.endswith(f"_{source}_{path.stem.rsplit('_', 1)[-1]}.parquet") for source in sources
            ):
                continue
            rows = [edit(path.name, n, row) for n, row in enumerate(iter_samples(str(path)), start=1)]
            write_parquet(rows, str(out / path.name))
        return out

    return copy


def checkpoint_state(checkpoint: Any) -> dict[str, Any]:
    """Everything a checkpoint holds in one dict: the training state, the optimizer and schedule
    (``optimizer.pt``) and the weights as written in ``policy/`` (``model``, by their saved names)."""
    import torch
    from safetensors.torch import load_file

    from trainer.checkpoint import load_state

    state = load_state(checkpoint)
    state |= torch.load(checkpoint.path / "optimizer.pt", weights_only=True)
    state["model"] = load_file(str(checkpoint.path / "policy" / "model.safetensors"))
    return state
