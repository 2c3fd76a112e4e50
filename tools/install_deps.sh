#!/usr/bin/env bash
# Installs everything tidal needs on a Debian 12 machine: Debian packages (as root) and a
# project-local Python venv with the LibTorch-carrying torch wheel plus the reference packages.
# Idempotent: a second run with everything present takes a second or two.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
stamp_dir="$root/.venv-stamps"
mkdir -p "$stamp_dir"

APT_PACKAGES=(build-essential cmake ninja-build ccache pkg-config git python3 python3-venv python3-dev
  libzmq3-dev libsodium-dev cppzmq-dev libyaml-cpp-dev libabsl-dev libgtest-dev libgmock-dev
  nlohmann-json3-dev libcpp-httplib-dev libcli11-dev prometheus curl
  prometheus-cpp-dev libjs-chart.js chromium libseccomp-dev clang libclang-rt-14-dev
  slurm-wlm munge iproute2 util-linux)  # slurm-wlm, munge, iproute2: the Slurm end-to-end test
apt_stamp="$stamp_dir/apt.$(echo "${APT_PACKAGES[*]}" | md5sum | cut -c1-12)"
if [ ! -f "$apt_stamp" ]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "[setup] apt-get install ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  touch "$apt_stamp"
fi

PY_PACKAGES=(torch==2.11.0 transformers tokenizers safetensors numpy openai tensorboard kubernetes-validate)
venv="$root/.venv"
py_stamp="$stamp_dir/py.$(echo "${PY_PACKAGES[*]}" | md5sum | cut -c1-12)"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ ! -f "$py_stamp" ]; then
  echo "[setup] pip install ${PY_PACKAGES[*]} into .venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q "${PY_PACKAGES[@]}"
  touch "$py_stamp"
fi
