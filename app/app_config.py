"""What `coachlab app` is started with: its config dataclass (the one place each default is stated;
the CLI flags are derived from it) and the check that the settings can work. No Gradio here, so
the command line can build its flags without loading the web stack."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from app import embedded
from coaching.config_flags import help_text

LOOPBACK = ("127.0.0.1", "localhost", "::1")
ROBOT_ENV = "COACHLAB_ROBOT"
APP_FLAGS = ("host", "port", "robot", "robot_key", "vla", "vla_key", "db", "subgoals", "detector", "sim_noise")  # the fields `coachlab app` takes as flags


class AppConfigError(ValueError):
    """A setting that cannot work; the message says which and what to do."""


@dataclass
class AppConfig:
    host: str = field(default="127.0.0.1", metadata=help_text("address to listen on; anything but loopback needs --auth"))
    port: int = field(default=7860, metadata=help_text("0 takes any free port"))
    robot: str = field(default_factory=lambda: os.environ.get(ROBOT_ENV, embedded.EMBEDDED), metadata=help_text(
        f"{embedded.EMBEDDED} (the embedded MuJoCo arm) or zmq://host:port (a robot bridge); or ${ROBOT_ENV}"))
    robot_key: str | None = field(default=None, metadata=help_text(
        "the robot bridge's public key (40 characters or its .key file) when it uses keys; or $COACHLAB_ROBOT_KEY"))
    vla_key: str | None = field(default=None, metadata=help_text(
        "the VLA server's public key (40 characters or its .key file) when it uses keys; or $COACHLAB_VLA_KEY"))
    vla: str | None = field(default=None, metadata=help_text(
        "VLA address, zmq://host:port or openpi://host:port (default: $COACHLAB_VLA, else the sim skill policy)"))
    db: str | None = field(default=None, metadata=help_text(
        "database URL or SQLite file (default: $COACHLAB_DB, else the user data dir)"))
    subgoals: str = field(default="sim", metadata=help_text("subgoal previews: sim (lookahead), none, or learned:DIR"))
    detector: str = field(default="learned", metadata=help_text(
        "object detector: learned (the shipped one), learned:DIR (from coachlab train-detector), owl:DIR (a "
        "transformers zero-shot detector saved in DIR) or none"))
    auth: list[tuple[str, str]] | None = None  # (user, password) pairs; from --auth user:password,... or $COACHLAB_AUTH
    sim_noise: float = field(default=embedded.SIM_NOISE, metadata=help_text(embedded.NOISE_HELP))
    task_family: str = "bussing"  # what the robot shows before the first episode, if it has it

    def check(self) -> None:
        if self.host not in LOOPBACK and not self.auth:
            raise AppConfigError(f"Refusing to serve on {self.host} without a login: pass --auth user:password "
                                 "(or set COACHLAB_AUTH), or bind to 127.0.0.1.")
        if self.robot != embedded.EMBEDDED:
            from policy_client import BadAddress, parse_address

            try:
                if parse_address(self.robot)[0] != "zmq":
                    raise BadAddress("")
            except BadAddress:
                raise AppConfigError(f"--robot {self.robot!r} is not understood; use sim (the embedded default) or "
                                     "zmq://host:port for a robot bridge.") from None
        if self.detector == "oracle":  # it would render the sim from its own thread, beside the loop's renders
            raise AppConfigError("The segmentation oracle is for benches and ablations, not the app: use --detector "
                                 "learned, learned:DIR, owl:DIR or none.")
        if not 0 <= self.port <= 65535:
            raise AppConfigError("--port must be between 0 (any free port) and 65535.")
