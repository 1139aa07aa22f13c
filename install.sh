#!/usr/bin/env bash
# Installs everything coachlab needs on a fresh Debian machine: system libraries for headless
# MuJoCo rendering (EGL on Mesa), a PostgreSQL server for the storage tests and Debian's chromium
# for the browser tests, FFmpeg's libraries for LeRobot's video decoder, CPU PyTorch (pinned first,
# or pip pulls a multi-GB CUDA build), the project with its test extras, then LeRobot's own dataset
# loader in a cached virtual environment of its own (it cannot live beside this project's torch;
# bench/lerobot_env.py), which the export tests and `coachlab bench export` check exports with, and
# openpi's official client likewise (it pins numpy below 2; bench/openpi_client_env.py), which the
# tests of `coachlab vla-server --format openpi` connect with.
set -euo pipefail
cd "$(dirname "$0")"
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libgl1 libgles2 libgl1-mesa-dri postgresql chromium ffmpeg >/dev/null
fi
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
python -m bench.lerobot_env >/dev/null
python -m bench.openpi_client_env >/dev/null
