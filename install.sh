#!/usr/bin/env bash
# Installs everything coachlab needs on a fresh Debian machine: system libraries for headless
# MuJoCo rendering (EGL on Mesa), a PostgreSQL server for the storage tests and Debian's chromium
# for the browser tests, CPU PyTorch (pinned first, or pip pulls a multi-GB CUDA build),
# then the project with its test extras.
set -euo pipefail
cd "$(dirname "$0")"
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libgl1 libgles2 libgl1-mesa-dri postgresql chromium >/dev/null
fi
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
