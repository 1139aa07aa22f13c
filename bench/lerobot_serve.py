"""Run inside LeRobot's environment (bench/lerobot_env.py): `policy_client.lerobot_policy` as a lab runs
it, after the environment's torchvision fix (bench/torchvision_shim.py). The coachlab checkout's root
is the first argument (this environment has numpy and pyzmq, all `policy_client` needs); the rest
are the adapter's own arguments."""

import sys

import torchvision_shim  # noqa: F401  (before lerobot: see its docstring)

sys.path.insert(0, sys.argv.pop(1))
from policy_client.lerobot_policy import main  # noqa: E402

main()
