"""The `coachlab` command line: one subcommand per job, JSON with --json.

Errors a user or the machine's set-up can cause (app/environment.py) are printed as one sentence on
stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import warnings
from typing import Any, Callable

from app.detector_command import add_parser as add_detector_parser
from app.distill_command import add_parser as add_distill_parser
from app.embedded import APP_CONTROL_HZ, NOISE_HELP, SIM_NOISE, SIM_VLA_FACTORY, UnknownTask
from app.episodes_command import add_parsers as add_episodes_parsers
from app.export_command import add_parser as add_export_parser
from app.environment import explain
from app.errors import UserError
from coaching.config_flags import add_flags, from_flags
from app.play_command import add_parser as add_play_parser
from coaching.settings import SessionError
from coaching.vla import VLADoesNotFit
from distill.dataset import DistillError
from policy_client import BadAddress, PolicyError
from policy_client.connect import API_KEY_ENV
from policy_client.curve import InsecureBind, KeysError, check_bind
from policy_client.server import AddressInUse
from storage.errors import StorageError


def _emit(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print(_human(result))


def _human(result: Any, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(result, dict):
        return "\n".join(f"{pad}{k}:\n{_human(v, indent + 1)}" if isinstance(v, (dict, list)) else f"{pad}{k}: {v}"
                         for k, v in result.items())
    if isinstance(result, list):
        return "\n".join(_human(v, indent) if isinstance(v, (dict, list)) else f"{pad}- {v}" for v in result)
    return f"{pad}{result}"


def cmd_tasks(args: argparse.Namespace) -> dict[str, Any]:
    from app.embedded import FAMILIES

    return {"tasks": [{"name": f.name, "description": f.description, "mean_subtasks": f.mean_subtasks}
                      for f in FAMILIES.values()]}


def cmd_coach(args: argparse.Namespace) -> dict[str, Any]:
    from app import embedded
    from coaching.episode import summarise
    from coaching.session import CoachingSession
    from coaching.vla import fit_vla
    from storage.database import configured_url

    tasks = list(embedded.task_families()) if args.task_family == "all" else \
        [t.strip() for t in args.task_family.split(",")]
    for t in tasks:
        embedded.check_task_family(t)
    if args.episodes < 1:
        raise UserError("--episodes must be at least 1.")
    if args.seed < 0:
        raise UserError("--seed must be zero or a positive whole number.")
    if not 0.0 <= args.noise <= 5.0:
        raise UserError("--noise must be between 0 (a perfect robot) and 5.")
    db = recorder = None
    if configured_url(args.db) is not None:  # coach logs only when a database is named
        from storage import Recorder, open_database

        db = open_database(args.db)
        recorder = Recorder(db)
    try:
        with embedded.vla(args.vla, server_key=args.vla_key, noise=args.noise, seed=args.seed) as vla:
            robot = embedded.sim_robot()
            try:
                fit_vla(vla, robot.describe(), "ee")  # before any episode starts: one sentence
            except BaseException:
                robot.close()
                raise
            session = CoachingSession(robot, vla, recorder, stepped=True).start()
            try:
                reports = embedded.scripted_coaching(session, tasks, args.episodes, args.seed, args.profile)
            finally:
                session.close()
    finally:
        if recorder is not None:
            recorder.close()  # an episode cut short by an error is kept, marked interrupted
            db.close()
    summary = {"tasks": {t: summarise(eps) for t, eps in reports.items()}}
    summary.update({"profile": args.profile, "noise": args.noise, "seeds": [args.seed, args.seed + args.episodes - 1]})
    if db is not None:
        summary["database"] = db.display_url
        summary["episode_ids"] = [r.episode_id for eps in reports.values() for r in eps]
    return summary


def cmd_app(args: argparse.Namespace) -> dict[str, Any]:
    from app.app_config import APP_FLAGS, AppConfig, AppConfigError
    from app.server import CoachingApp

    auth_text = args.auth or os.environ.get("COACHLAB_AUTH", "")
    auth = []
    for pair in filter(None, (p.strip() for p in auth_text.split(","))):
        user, sep, password = pair.partition(":")
        if not sep or not user or not password:
            raise UserError("--auth takes user:password pairs separated by commas, e.g. ana:secret,ben:hunter2.")
        auth.append((user, password))
    config = from_flags(AppConfig, args, APP_FLAGS, auth=auth or None)

    # The control loop re-takes Python's GIL after every physics step and render; while the web
    # server holds it, the loop waits up to one switch interval each time (5 ms by default, which
    # cost the loop a quarter of its rate with five tabs open). Hand it over sooner in this process.
    sys.setswitchinterval(0.0005)
    _check_port_free(config.host, config.port)  # before the robot, the VLA and the page are built
    try:
        app = CoachingApp(config)
        app.serve()
    except (AppConfigError, SessionError, ValueError) as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:
        pass
    return {"stopped": True}


def cmd_robot_server(args: argparse.Namespace) -> dict[str, Any]:
    from app.embedded import check_sim_rendering, sim_robot
    from coaching.robot_bridge import RobotBridgeServer

    _check_port(args.port)
    if not 1 <= args.hz <= 100:
        raise UserError("--hz must be between 1 and 100.")
    address, keys = f"tcp://{args.host}:{args.port}", _server_keys(args)
    check_bind(address, keys, RobotBridgeServer.what)  # before the sim loads
    check_sim_rendering()  # a machine that cannot render says so now, not in the first reset's reply
    return _serve(RobotBridgeServer(sim_robot(args.hz), address, keys=keys), "robot bridge for the sim", keys)


def cmd_vla_server(args: argparse.Namespace) -> dict[str, Any]:
    from policy_client.server import PolicyServer

    if args.format == "openpi":
        return _serve_openpi(args)
    if args.api_key or args.layout:
        raise UserError("--api-key and --layout belong to --format openpi; coachlab's ZMQ format takes --keys.")
    port = 5555 if args.port is None else args.port
    _check_port(port)
    address, keys = f"tcp://{args.host}:{port}", _server_keys(args)
    check_bind(address, keys, PolicyServer.what)  # before the policy loads
    return _serve(PolicyServer(_vla_policy(args), address, keys=keys), f"serving {args.policy}", keys)


def _serve_openpi(args: argparse.Namespace) -> dict[str, Any]:
    """`vla-server --format openpi`: the policy behind openpi's websocket wire (policy_client/openpi_server.py)."""
    from policy_client.openpi_adapter import OpenPIPolicyAdapter
    from policy_client.openpi_layout import get_layout
    from policy_client.openpi_server import OpenPIFormatServer, check_bind as check_openpi_bind

    port = 8000 if args.port is None else args.port  # as openpi's scripts/serve_policy.py
    _check_port(port)
    if args.keys:  # only the flag: $COACHLAB_KEYS may be set for the ZMQ servers of the same shell
        raise UserError("openpi's format has no CURVE keys: drop --keys and pass --api-key.")
    layout, api_key = args.layout or "libero", args.api_key or os.environ.get(API_KEY_ENV) or None
    try:
        get_layout(layout)
    except ValueError as e:
        raise UserError(str(e)) from None
    check_openpi_bind(args.host, port, api_key)  # before the policy loads, as the ZMQ server checks
    _check_port_free(args.host, port)
    server = OpenPIFormatServer(OpenPIPolicyAdapter(_vla_policy(args), layout), args.host, port, api_key=api_key)
    print(f"serving {args.policy} in openpi's format ({layout} layout) at {server.uri}"
          f"{', clients need its API key' if api_key else ''} (Ctrl+C stops)", file=sys.stderr, flush=True)
    server.serve_until_interrupted()
    return {"address": server.uri, "format": "openpi", "layout": layout, "served": server.served,
            "errors": server.errors}


def _vla_policy(args: argparse.Namespace) -> Any:
    """The policy `--policy module:callable` builds with `--options`; UserError in one sentence if it cannot."""
    from policy_client.local_server import load_factory

    try:
        options = json.loads(args.options)
    except ValueError:
        raise UserError("--options must be a JSON object, e.g. '{\"noise\": 0.5}'.") from None
    try:
        return load_factory(args.policy)(**options)
    except (ImportError, AttributeError, ValueError) as e:
        raise UserError(f"Cannot build the policy {args.policy!r}: {e}. Give --policy as module:callable.") from None


def cmd_keys(args: argparse.Namespace) -> dict[str, Any]:
    from policy_client.curve import CLIENTS_DIR, KEYS_ENV, SERVER_KEY_NAME, make_keys, read_public_key

    public, secret = make_keys(args.dir, args.name)
    key = read_public_key(str(public)).decode()
    if args.name == SERVER_KEY_NAME:  # quoted: Z85 keys hold $, [, ] ... that a shell would eat
        use = (f"start the server with --keys {args.dir} (or ${KEYS_ENV}); give clients this public key: "
               f"--robot-key / --vla-key {shlex.quote(key)} (or $COACHLAB_ROBOT_KEY / $COACHLAB_VLA_KEY), "
               f"or the file {public}. Put client .key files "
               f"in {os.path.join(args.dir, CLIENTS_DIR)}/ to admit only those clients.")
    else:
        use = (f"copy {public} into the server's {CLIENTS_DIR}/ folder and set COACHLAB_CLIENT_KEY={secret} "
               "where this client runs.")
    return {"public_key": key, "public_key_file": str(public), "secret_key_file": str(secret), "use": use}


def _server_keys(args: argparse.Namespace):
    """The server's CURVE keys from --keys DIR or $COACHLAB_KEYS, or None."""
    from policy_client.curve import KEYS_ENV, load_server_keys

    folder = args.keys or os.environ.get(KEYS_ENV)
    return load_server_keys(folder) if folder else None


def _check_port_free(host: str, port: int) -> None:
    """UserError (one sentence) if nothing could listen on host:port right now."""
    import socket

    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds it
        try:
            probe.bind((host, port))
        except OSError as e:
            raise UserError(f"Cannot listen on {host}:{port} ({e.strerror}); choose another --port.") from None


def _check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise UserError("--port must be between 0 (any free port) and 65535.")


def _serve(server: Any, what: str, keys: Any = None) -> dict[str, Any]:
    """Announce a ZMQ server's address on stderr, serve until Ctrl+C, report what it did."""
    secured = f", clients need its public key {shlex.quote(keys.public.decode())}" if keys is not None else ""
    print(f"{what} at {server.address.replace('tcp://', 'zmq://')}{secured} (Ctrl+C stops)", file=sys.stderr, flush=True)
    server.serve_until_interrupted()
    return {"address": server.address, "served": server.served, "errors": server.errors}


def cmd_bench(args: argparse.Namespace) -> dict[str, Any]:
    import importlib

    import inspect

    module = importlib.import_module(f"bench.{args.what.replace('-', '_')}")
    options = {k: getattr(args, k) for k in BENCH_OPTIONS if getattr(args, k) is not None}
    unknown = set(options) - set(inspect.signature(module.run).parameters)
    if unknown:
        raise UserError(f"bench {args.what} takes no {', '.join('--' + k.replace('_', '-') for k in sorted(unknown))}: "
                        "see coachlab bench --help for which bench takes which option.")
    for name in ("runs", "kills", "messages"):
        if options.get(name, 1) < 1:
            raise UserError(f"--{name} must be at least 1.")
    return module.run(**options)


BENCH_OPTIONS = ("train_seed", "eval_seed", "runs", "kills", "messages")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coachlab", description="Coach a robot through long-horizon tasks.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tasks", help="list the sim's task families")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("coach", help="let the scripted coach drive the sim for N episodes")
    p.add_argument("--task-family", "--task", default="all", dest="task_family",
                   help="a task family, a comma list, or 'all'")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", choices=["expert", "sloppy"], default="expert")
    p.add_argument("--noise", type=float, default=SIM_NOISE, help=NOISE_HELP)
    p.add_argument("--vla", default=None, help="VLA address, zmq://host:port or openpi://host:port "
                                               "(default: $COACHLAB_VLA, else the sim skill policy in a child process)")
    p.add_argument("--vla-key", default=None, dest="vla_key",
                   help="the VLA server's public key when it uses keys (or $COACHLAB_VLA_KEY)")
    p.add_argument("--db", default=None, help="log every episode to this database URL or SQLite file "
                                              "(default: $COACHLAB_DB if set, else nothing is logged)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_coach)

    add_episodes_parsers(sub)
    add_export_parser(sub)
    add_play_parser(sub)
    add_distill_parser(sub)
    add_detector_parser(sub)

    p = sub.add_parser("app", help="the coaching web app (sim robot + served sim policy + SQLite by default)")
    from app.app_config import APP_FLAGS, AppConfig

    add_flags(p, AppConfig, APP_FLAGS, flag_names={"sim_noise": "noise"})
    p.add_argument("--auth", default=None, help="user:password[,user:password] (or $COACHLAB_AUTH)")
    p.set_defaults(func=cmd_app)

    p = sub.add_parser("robot-server", help="serve the MuJoCo sim robot as a robot bridge over ZMQ")
    p.add_argument("--port", type=int, default=5560)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--hz", type=float, default=APP_CONTROL_HZ, help="control rate")
    p.add_argument("--keys", default=None, help="folder of the server's key pair from coachlab keys (or $COACHLAB_KEYS); "
                                                "needed to listen beyond loopback")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_robot_server)

    p = sub.add_parser("keys", help="make a CURVE key pair for a robot bridge or VLA server (or one of its clients)")
    p.add_argument("--dir", default="coachlab-keys", help="folder to write NAME.key and NAME.key_secret into")
    p.add_argument("--name", default="server", help="server (the default) or a client's name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("vla-server", help="serve the sim skill policy (or any policy factory) over ZMQ or in openpi's format")
    p.add_argument("--port", type=int, default=None, help="default 5555 (zmq), 8000 (openpi)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--format", choices=["zmq", "openpi"], default="zmq",
                   help="zmq: coachlab's protocol; openpi: openpi's websocket format, for its WebsocketClientPolicy")
    p.add_argument("--layout", default=None, help="--format openpi: the request keys, libero (default), droid or aloha")
    p.add_argument("--policy", default=SIM_VLA_FACTORY, help="module:callable building the policy")
    p.add_argument("--options", default="{}", help="JSON keyword arguments for the policy factory")
    p.add_argument("--keys", default=None, help="folder of the server's key pair from coachlab keys (or $COACHLAB_KEYS); "
                                                "needed to listen beyond loopback")
    p.add_argument("--api-key", default=None, dest="api_key",
                   help="--format openpi: the key clients must send (or $COACHLAB_VLA_API_KEY); needed beyond loopback")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_vla_server)

    p = sub.add_parser("bench", help="run a benchmark and print its JSON")
    p.add_argument("what", choices=["sim", "grounding", "coach", "rpc", "storage", "ui", "distill", "subgoals", "perception",
                                    "crash", "vla-faults", "fuzz", "export", "lerobot-policy"])
    p.add_argument("--runs", type=int, default=None, help="bench crash: episodes killed with SIGKILL (default 100)")
    p.add_argument("--kills", type=int, default=None, help="bench vla-faults: VLA server kills (default 100)")
    p.add_argument("--messages", type=int, default=None,
                   help="bench fuzz: bad messages sent to each server (default 1000000)")
    p.add_argument("--train-seed", type=int, default=None, dest="train_seed",
                   help="bench distill: the first seed of the coached training episodes (default 0)")
    p.add_argument("--eval-seed", type=int, default=None, dest="eval_seed",
                   help="bench distill: the first of the unseen seeds it evaluates on (default 1000)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    # GLFW's warnings (no display) come before the one sentence app/environment.py says about them
    warnings.filterwarnings("ignore", module="glfw")
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], dict[str, Any]] = args.func
    try:
        result = handler(args)
    except (UserError, UnknownTask, PolicyError, BadAddress, VLADoesNotFit, SessionError, StorageError,
            DistillError, InsecureBind, KeysError, AddressInUse) as err:
        print(f"coachlab {args.command}: {explain(err) or err}", file=sys.stderr)
        return 2
    except Exception as err:  # the machine's set-up (graphics, libraries, ports, folders): one sentence
        sentence = explain(err)
        if sentence is None:
            raise  # not the environment: a bug, shown as one
        print(f"coachlab {args.command}: {sentence}", file=sys.stderr)
        return 2
    try:
        _emit(result, getattr(args, "json", False))
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped early (`coachlab episodes | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nor at exit, when Python flushes
    return 0


if __name__ == "__main__":
    sys.exit(main())
