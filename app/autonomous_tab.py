"""The Autonomous tab, for demo staff: pick a distilled policy and a task, run it once or in a loop
with a new seed each run, watch the live cameras with the policy's subtask and confidence, Stop,
or Take over (the same episode goes on as coaching; the person's subtasks are corrections).

The tab owns the widgets and one `Autonomy` (the runner of the moment and the success counter);
driving the robot is `coaching/autonomous_runner.py`'s job. A person's mistake is one sentence
in a toast.
"""

from __future__ import annotations

import html
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr

from app.page_assets import camera_html
from coaching.autonomous_runner import AutonomousRunner, RunnerConfig
from coaching.autonomy import AutonomyConfig
from coaching.detector import NO_DETECTOR, Detector
from coaching.session import CoachingSession, SessionError
from storage import Database, StorageError, list_policies

LOOP, ONCE = "in a loop (new seed each run)", "once"
LIMIT_S = 120.0  # a run's time limit by default: a demo episode that has not finished by then will not
MAX_STUCK = 8  # subtasks in a row not completed before a run is ended as a failure


class Autonomy:
    """The runner of the moment and the success counter over the runs of one policy and task family."""

    def __init__(self, session: CoachingSession, db: Database, detector: Detector = NO_DETECTOR):
        self.session, self.db, self.detector = session, db, detector
        self.runner: AutonomousRunner | None = None
        self._lock = threading.Lock()  # one Run / Stop / Take over at a time, from any tab
        self._key: tuple[str, str] | None = None  # (policy folder, task family) the counter is about
        self._earlier = (0, 0)  # successes, runs of finished runners for that key
        self.starting: str | None = None  # the policy folder a Run is loading, until its episode has started

    def run(self, policy_dir: str, task_family: str, task: str, seed: int, loop: bool, user: str,
            limit_s: float = LIMIT_S, max_stuck: int = MAX_STUCK) -> int:
        """Start the policy on a new episode (each at most `limit_s` long, ended after `max_stuck`
        subtasks in a row not completed); returns its id once the robot has reset."""
        if not 5 <= limit_s <= 3600 or not 1 <= max_stuck <= 100:
            raise SessionError("Give each run 5 to 3600 s, and end it after 1 to 100 subtasks not completed.")
        with self._lock:
            if self.runner is not None and self.runner.running:
                raise SessionError("The policy is already running: Stop it first.")
            if self.session.status()["episode_id"] is not None:
                raise SessionError("An episode is running (Coach tab, or one taken over): end it first.")
            self.starting = policy_dir  # loading and resetting take seconds: every tab says so meanwhile
            try:
                policy = load_policy(policy_dir, task, self.db)
                self._count_in((policy_dir, task_family))
                config = RunnerConfig(task_family=task_family, task=task, first_seed=seed,
                                      episodes=None if loop else 1, max_stuck=int(max_stuck),
                                      autonomy=AutonomyConfig(max_episode_s=float(limit_s)))
                self.runner = AutonomousRunner(self.session, policy, config, user=user, detector=self.detector).start()
                return self._first_episode(self.runner)
            finally:
                self.starting = None

    def stop(self, user: str) -> str:
        with self._lock:
            if self.runner is not None and self.runner.running:
                was = self._episode()
                self.runner.stop(user)  # ends its episode as aborted
                if self._episode() is None:
                    return f"Stopped: episode {was} saved as aborted." if was else "Stopped."
            if self._episode() is not None:  # a taken-over episode: hold, the person goes on
                self.session.stop(user)
                return "Stopped: the robot holds; send a subtask or end the episode."
            return "Nothing is running."

    def take_over(self, user: str) -> int:
        with self._lock:
            if self.runner is None or not self.runner.running:
                raise SessionError("The policy is not running: press Run first.")
            return self.runner.take_over(user)

    def counter(self) -> tuple[int, int]:
        s, r = self._earlier
        if self.runner is not None:
            st = self.runner.status()
            s, r = s + st["successes"], r + st["runs"]
        return s, r

    def _count_in(self, key: tuple[str, str]) -> None:
        """Fold the finished runner into the counter, or start afresh for another policy or task family."""
        if key != self._key:
            self._key, self._earlier = key, (0, 0)
        elif self.runner is not None:
            st = self.runner.status()
            self._earlier = (self._earlier[0] + st["successes"], self._earlier[1] + st["runs"])
        self.runner = None

    def _episode(self) -> int | None:
        return self.session.status()["episode_id"]

    @staticmethod
    def _first_episode(runner: AutonomousRunner, timeout_s: float = 60.0) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            st = runner.status()
            if st["error"]:
                raise SessionError(st["error"])
            if st["episode_id"] is not None:
                return st["episode_id"]
            time.sleep(0.05)
        raise SessionError("The robot did not start the episode within a minute; check the robot connection.")


def load_policy(policy_dir: str, task: str, db: Database):
    """The distilled policy in `policy_dir`, checked against `task`, with its id in this database."""
    from app.policy_registry import policy_id_in
    from distill.dataset import DistillError
    from distill.learned_policy import LearnedHighLevelPolicy

    try:
        policy = LearnedHighLevelPolicy.load(policy_dir)
        policy.check_task(task)
        policy.checkpoint_id = policy_id_in(db, policy_dir)
    except (DistillError, StorageError) as e:
        raise SessionError(str(e)) from None
    return policy


def policy_choices(db: Database) -> list[tuple[str, str]]:
    """(label, folder) of every registered high-level policy, newest first."""
    from distill.run import HIGH_LEVEL_KIND
    out = []
    for p in list_policies(db, kind=HIGH_LEVEL_KIND):
        acc = (p.metrics or {}).get("val_next_accuracy")
        when = p.created_at.strftime("%Y-%m-%d %H:%M") if p.created_at else ""
        label = f"#{p.id} {Path(p.checkpoint_path).name} · {len(p.training_episode_ids)} episodes" \
                f"{f' · next-subtask acc {acc:.2f}' if isinstance(acc, (int, float)) else ''} · {when}"
        out.append((label, p.checkpoint_path))
    return out


def learned_task_family(policy_dir: str | None, task_families: dict[str, str]) -> str | None:
    """The first of this robot's task families whose task the policy learned (None if unknown or unreadable)."""
    import json

    try:
        learned = json.loads((Path(policy_dir or "") / "training.json").read_text()).get("tasks", [])
    except (OSError, ValueError, AttributeError):
        return None
    return next((name for name, text in task_families.items() if text in learned), None)


def _counter_md(autonomy: Autonomy) -> str:
    s, r = autonomy.counter()
    st = autonomy.runner.status() if autonomy.runner is not None else {}
    decision = st.get("decision")
    lines = [f"## Successes: {s} / {r} runs" + (f" ({100 * s / r:.0f}%)" if r else "")]
    if autonomy.starting:
        lines.append(f"**Starting:** loading the policy from `{html.escape(autonomy.starting)}` and resetting the robot…")
    if st.get("running"):
        lines.append(f"**Running** episode {st['episode_id']} (seed {st['seed']})")
    if decision and st.get("running"):  # a stopped or taken-over policy thinks nothing any more
        alts = ", ".join(f"{html.escape(t)} {p:.0%}" for t, p in decision["alternatives"][:2])
        lines.append(f"Policy thinks: **{html.escape(decision['subtask'])}** {decision['confidence']:.0%}"
                     + (f" (then {alts})" if alts else ""))
        view = st.get("view") or {}
        if view:  # what the policy sees and remembers: the detections it used, the items it counts as handled
            def names(key: str) -> str:
                return ", ".join(html.escape(x) for x in view.get(key, [])) or "nothing"
            lines.append(f"Sees: {names('in_view')} · handled: {names('handled')}"
                         + (f" · grasp missed, still to do: {names('missed')}" if view.get("missed") else "")
                         + (f" · active subtask finished: {view['finished']:.0%}" if view.get("active") else ""))
    if st.get("last_result"):
        lines.append(f"Last: {html.escape(st['last_result'])}")
    if st.get("error"):
        lines.append(f"**Stopped by an error:** {html.escape(st['error'])}")
    return "\n\n".join(lines)


def autonomous_tab(session: CoachingSession, db: Database, task_families: dict[str, str], tab: gr.Tab,
                   user_of: Any, fail: Any, detector: Detector = NO_DETECTOR) -> gr.Timer:
    """Build the tab's widgets and events; `user_of(request)` names the person, `fail(err)` makes the toast;
    the policy sees the items through `detector` (the app's). Returns the timer that refreshes the
    run's counter, for the page to run only while this tab is in view."""
    autonomy = Autonomy(session, db, detector)
    gr.HTML(camera_html(tuple(html.escape(c) for c in session.description.cameras), session.description.image_size,
                        view="autonomous"), elem_id="au-live")
    with gr.Row():
        run = gr.Button("Run", variant="primary", elem_id="au-run")
        stop = gr.Button("Stop", variant="stop", elem_id="au-stop")
        take = gr.Button("Take over", elem_id="au-take-over")
    counter = gr.Markdown(_counter_md(autonomy), elem_id="au-counter")
    with gr.Row(visible=False, elem_id="au-coach-row") as coach_row:
        subtask = gr.Textbox(label="Your subtask (logged as a correction; Enter sends)", max_lines=1, scale=4,
                             elem_id="au-subtask", max_length=20_000)
        send = gr.Button("Send", scale=1, elem_id="au-send")
        outcome = gr.Radio(["success", "failure"], value="success", label="Outcome", scale=2)
        end = gr.Button("End episode", scale=1, elem_id="au-end")
    with gr.Accordion("Policy and task", open=True):
        with gr.Row():
            chosen = gr.Dropdown([], label="Distilled policy (registered)", elem_id="au-policy", scale=3)
            folder = gr.Textbox(label="…or its checkpoint folder", placeholder="runs/hl1", elem_id="au-folder", scale=3)
            refresh = gr.Button("Refresh list", scale=1, elem_id="au-refresh")
        with gr.Row():
            task_family = gr.Dropdown(list(task_families), value=next(iter(task_families)), label="Task family", elem_id="au-task-family")
            task = gr.Textbox(value=next(iter(task_families.values())), label="Task text", interactive=False, scale=3)
            seed = gr.Number(value=1000, precision=0, minimum=0, label="First seed", elem_id="au-seed")
            runs = gr.Radio([ONCE, LOOP], value=ONCE, label="Run", elem_id="au-runs")
        with gr.Row():
            limit = gr.Number(value=LIMIT_S, minimum=5, label="Time limit per run (s)", elem_id="au-limit")
            max_stuck = gr.Number(value=MAX_STUCK, precision=0, minimum=1,
                                  label="End a run after this many subtasks in a row not completed",
                                  elem_id="au-max-stuck")
    timer = gr.Timer(1.0, active=False)

    def refresh_policies(current: str | None):
        try:
            choices = policy_choices(db)
        except StorageError as e:
            raise fail(e)
        paths = [p for _, p in choices]
        return gr.Dropdown(choices=choices, value=current if current in paths else (paths[0] if paths else None))

    refresh.click(refresh_policies, [chosen], [chosen])
    tab.select(refresh_policies, [chosen], [chosen], show_progress="hidden")
    task_family.change(lambda s: task_families.get(s, ""), [task_family], [task], show_progress="hidden")
    # A policy knows only the tasks it learned: offer the first of them.
    chosen.change(lambda p: learned_task_family(p, task_families) or gr.skip(), [chosen], [task_family], show_progress="hidden")
    # a checkpoint folder typed in picks its task family as a registered policy does
    folder.change(lambda p: learned_task_family(p, task_families) or gr.skip(), [folder], [task_family],
                  show_progress="hidden")

    def do_run(chosen_dir, typed_dir, family_name, seed_value, how, limit_s, stuck_n, request: gr.Request):
        policy_dir = (typed_dir or "").strip() or (chosen_dir or "")
        if not policy_dir:
            raise gr.Error("Choose a distilled policy from the list, or type its checkpoint folder.", duration=8)
        if family_name not in task_families:
            raise gr.Error(f"Choose a task from the list; this robot has {', '.join(task_families)}.", duration=8)
        # loading the policy and resetting the robot take seconds: say so at once
        yield (f"**Starting:** loading the policy from `{html.escape(policy_dir)}` and resetting the robot…",
               gr.Row(visible=False))  # at once: the counter's timer says the same until the episode starts
        try:
            episode_id = autonomy.run(policy_dir, family_name, task_families[family_name], int(seed_value or 0), how == LOOP,
                                      user_of(request), float(limit_s or LIMIT_S), int(stuck_n or MAX_STUCK))
        except SessionError as e:
            raise fail(e)
        gr.Info(f"Episode {episode_id} started: the policy is driving.")
        yield _counter_md(autonomy), gr.Row(visible=False)

    run.click(do_run, [chosen, folder, task_family, seed, runs, limit, max_stuck], [counter, coach_row],
              show_progress="hidden")

    def do_stop(request: gr.Request):
        try:
            gr.Info(autonomy.stop(user_of(request)))
        except SessionError as e:
            raise fail(e)
        return _counter_md(autonomy)

    stop.click(do_stop, None, [counter])

    def do_take_over(request: gr.Request):
        try:
            episode_id = autonomy.take_over(user_of(request))
        except SessionError as e:
            raise fail(e)
        gr.Info(f"You have episode {episode_id}: type the next subtask (it is logged as a correction).")
        return _counter_md(autonomy), gr.Row(visible=True)

    take.click(do_take_over, None, [counter, coach_row])

    def do_send(text: str, request: gr.Request):
        try:
            session.send_subtask(text, user_of(request))
        except SessionError as e:
            raise fail(e)
        return ""

    subtask.submit(do_send, [subtask], [subtask], show_progress="hidden")
    send.click(do_send, [subtask], [subtask], show_progress="hidden")

    def do_end(outcome_value: str, request: gr.Request):
        try:
            episode_id = session.end_episode(outcome_value, user_of(request))
        except SessionError as e:
            raise fail(e)
        gr.Info(f"Episode {episode_id} saved as {outcome_value}.")
        return _counter_md(autonomy), gr.Row(visible=False)

    end.click(do_end, [outcome], [counter, coach_row])
    timer.tick(lambda: _counter_md(autonomy), None, [counter], show_progress="hidden", concurrency_limit=None)
    return timer
