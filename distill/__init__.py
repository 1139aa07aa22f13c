"""Distillation: datasets from the coaching logs, the high-level language policy, its training, and autonomous playback."""
