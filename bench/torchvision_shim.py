"""Imported first inside LeRobot's environment (bench/lerobot_env.py), never by coachlab.

torchvision's PyPI wheels are CUDA builds: beside CPU torch their C ops do not load, and torchvision
0.28 then registers fake kernels for two ops that were never defined and fails to import. Defining
the two schemas (never run: neither datasets nor the ResNet backbones of LeRobot's policies use
detection ops) lets it import; nothing else is changed. A lab's own LeRobot environment, with a
matching torchvision, needs none of this.
"""

import torch

_lib = torch.library.Library("torchvision", "DEF")
for _op in ("nms", "qnms"):
    _lib.define(f"{_op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
