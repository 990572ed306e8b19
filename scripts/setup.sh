#!/usr/bin/env bash
# Idempotent set-up on Debian with Python >= 3.10: the Debian data packages gapkit reads, a
# virtualenv at .venv/ with the pinned dependencies of requirements.lock, and gapkit itself
# (editable). A second run only checks and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  dataset-fashion-mnist            # Fashion-MNIST 60k+10k (idx)
  openclipart-png openclipart-svg  # 8k clip-art images + titles/keywords
  fonts-noto-color-emoji           # emoji images
  unicode-cldr-core                # emoji names/keywords (captions)
  chromium                         # headless browser test of the HTML report
)
PY=${PYTHON:-python3}

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  missing+=("python${ver}-venv")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_ apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

"$PY" -c 'import sys; assert sys.version_info >= (3, 10), "gapkit needs Python >= 3.10"'
[ -x .venv/bin/python ] || "$PY" -m venv .venv

stamp=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat .venv/.gapkit-setup 2>/dev/null)" != "$stamp" ]; then
  echo "setup: installing pinned Python dependencies into .venv (first time: a few minutes)"
  # pinned build tools: setuptools >= 77 reads the SPDX licence field of pyproject.toml
  .venv/bin/python -m pip install -q "pip==26.3" "setuptools==84.2.1" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  echo "$stamp" > .venv/.gapkit-setup
fi
