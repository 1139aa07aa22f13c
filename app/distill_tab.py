"""The Distill tab, for researchers: choose logged episodes (task, status, quality; the count
shown), train a high-level policy with progress and its loss plot redrawn every epoch, evaluate it
with `coachlab play` on unseen seeds next to the scripted coach, and see the success rates as a plot.

Training and evaluation run as child processes (`app/distill_jobs.py`), each with its own sim
robot and VLA server for `play`, so the live robot of the Coach and Autonomous tabs is untouched.
The tab owns the widgets and the jobs of the moment; a person's mistake is one sentence in a toast.
"""

from __future__ import annotations

import html
import json
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr

from app.distill_jobs import Job, play_command, train_command
from storage import Database, StorageError
from storage.database import ENV_VAR as DB_ENV_VAR
from storage.vocab import FINAL_STATUSES

from app.embedded import SIM_NOISE
from distill.run import PLOT  # what distill.train redraws after every epoch
from distill.train import TrainConfig
RESULT_COLUMNS = ["task", "policy", "scripted coach", "subtasks done", "episodes"]  # success rates, policy's mean


def selection_config(tasks: list[str], status: list[str], min_quality: float):
    from distill.dataset import DatasetConfig

    return DatasetConfig(tasks=list(tasks) or None, status=tuple(status) or ("success",),
                         min_quality=int(min_quality) if min_quality and min_quality > 1 else None)


def count_selected(db: Database, tasks: list[str], status: list[str], min_quality: float) -> str:
    from distill.dataset import DistillError, select_episodes

    try:
        n = len(select_episodes(db, selection_config(tasks, status, min_quality)))
    except (DistillError, StorageError):
        n = 0
    return f"**{n} episode{'s' if n != 1 else ''} selected**" + (
        " — widen the selection or coach some first" if n == 0 else
        f" — too few to validate: training holds some episodes out to measure the policy, and {n} leaves none;"
        f" select at least {MIN_TO_VALIDATE} (a useful policy needs many more)" if n < MIN_TO_VALIDATE else "")


MIN_TO_VALIDATE = 2  # distill.dataset.split_episodes holds one out from two on


def figure(value: Any) -> str:
    """A validation figure, or why there is none (never "None")."""
    return "not measured (no held-out episode)" if value is None else str(value)


def default_out_dir() -> str:
    from storage.database import default_sqlite_path

    return str(Path(default_sqlite_path()).parent / "policies" / time.strftime("hl-%Y%m%d-%H%M%S"))


class DistillJobs:
    """The training and the evaluation of the moment (one each: the machine's cores are shared)."""

    def __init__(self, db: Database, task_families: dict[str, str]):
        self.db, self.task_families = db, task_families
        self.train: Job | None = None
        self.train_out: str | None = None
        self.evaluation: Job | None = None
        self.eval_tasks: list[str] = []
        self._lock = threading.Lock()

    def start_training(self, out_dir: str, epochs: int, tasks: list[str], status: list[str],
                       min_quality: float) -> str:
        from distill.dataset import select_episodes

        with self._lock:
            if self.train is not None and self.train.running:
                raise ValueError("A training is running: wait for it or cancel it first.")
            if not 1 <= epochs <= 1000:
                raise ValueError("Train for 1 to 1000 epochs.")
            select_episodes(self.db, selection_config(tasks, status, min_quality))  # one sentence when empty
            out = out_dir.strip() or default_out_dir()
            if (Path(out) / "model.safetensors").exists():
                raise ValueError(f"{out} already holds a policy: choose a new folder.")
            cmd = train_command(out, epochs, list(tasks), list(status) or ["success"],
                                int(min_quality) if min_quality and min_quality > 1 else None)
            self.train, self.train_out = Job([cmd], env={DB_ENV_VAR: self.db.url}).start(), out
            return out

    def start_evaluation(self, policy_dir: str, episodes: int, seed: int, max_episode_s: float) -> list[str]:
        """Evaluate on every task the policy learned that this robot offers; returns their task family names."""
        from distill.learned_policy import load_checkpoint

        with self._lock:
            if self.evaluation is not None and self.evaluation.running:
                raise ValueError("An evaluation is running: wait for it first.")
            if not policy_dir.strip():
                raise ValueError("Train a policy first, or type the checkpoint folder to evaluate.")
            if not 1 <= episodes <= 100:
                raise ValueError("Evaluate on 1 to 100 episodes per task.")
            learned = load_checkpoint(policy_dir.strip()).training.get("tasks", [])
            by_text = {text: name for name, text in self.task_families.items()}
            names = [by_text[t] for t in learned if t in by_text]
            if not names:
                raise ValueError("This policy learned none of this robot's tasks, so there is nothing to evaluate.")
            cmds = [play_command(policy_dir.strip(), n, episodes, seed, max_episode_s, noise=SIM_NOISE) for n in names]
            self.evaluation, self.eval_tasks = Job(cmds).start(), names
            return names


def progress_md(job: Job | None, what: str) -> str:
    if job is None:
        return ""
    if job.error:
        return f"**{what} stopped:** {html.escape(job.error)}"
    p = job.progress
    bar = f"<progress value='{p.n}' max='{max(p.total, 1)}'></progress> {html.escape(p.desc)} {p.n}/{p.total}"
    if job.running:
        step = f" (task {job.step + 1} of {len(job.commands)})" if len(job.commands) > 1 else ""
        return f"**{what}…**{step} {bar}"
    return ""


def training_md(jobs: DistillJobs) -> str:
    job = jobs.train
    if job is None or job.running or job.error or not job.results:
        return progress_md(job, "Training")
    m = job.results[-1]
    return (f"**Trained** in {m.get('train_seconds')} s: on held-out episodes the next subtask is right "
            f"{figure(m.get('val_next_accuracy'))} of the time, `done` {figure(m.get('val_done_accuracy'))}, whether a "
            f"subtask is finished {figure(m.get('val_finished_accuracy'))}; checkpoint "
            f"`{html.escape(str(m.get('checkpoint')))}`, registered as policy #{m.get('policy_id')} "
            "(pick it in the Autonomous tab).")


def results_rows(jobs: DistillJobs) -> list[list[Any]]:
    job = jobs.evaluation
    rows = []
    for name, r in zip(jobs.eval_tasks, job.results if job else []):
        pf, cf = r.get("policy_figures", {}), r.get("scripted_coach_figures", {})
        rows.append([name, pf.get("success_rate"), cf.get("success_rate"), pf.get("mean_subtasks_completed"),
                     pf.get("episodes")])
    return rows


def results_figure(rows: list[list[Any]]):
    """Grouped bars: success rate per task, the policy next to the scripted coach on the same seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 3.2))
    x = np.arange(len(rows))
    for offset, col, label, colour in ((-0.2, 1, "distilled policy", "#2f81f7"), (0.2, 2, "scripted coach", "#9a9a9a")):
        values = [r[col] or 0 for r in rows]
        bars = ax.bar(x + offset, values, 0.38, label=label, color=colour)
        ax.bar_label(bars, [f"{v:.0%}" for v in values], padding=2)  # a 0% bar is otherwise invisible
    ax.set_xticks(x, [r[0] for r in rows])
    ax.set_xlim(-0.75, len(rows) - 0.25)
    ax.set_ylim(0, 1.25)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_ylabel("success rate")
    ax.set_title("Success on unseen seeds")
    ax.legend(loc="upper left", ncol=2, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    plt.close(fig)
    return fig


def distill_tab(db: Database, task_families: dict[str, str], tab: gr.Tab, fail: Any) -> gr.Timer:
    """Build the tab's widgets and events; `fail(err)` makes the toast. Returns the timer that shows
    training and evaluation as they go, for the page to run only while this tab is in view."""
    jobs = DistillJobs(db, task_families)
    gr.Markdown("### 1 · Episodes to learn from")
    with gr.Row():
        tasks = gr.CheckboxGroup(list(task_families), label="Tasks (none ticked: all)", elem_id="dl-tasks", scale=3)
        status = gr.CheckboxGroup(list(FINAL_STATUSES), value=["success"], label="Status", elem_id="dl-status",
                                  scale=3)
        quality = gr.Slider(1, 5, value=1, step=1, label="Quality at least", elem_id="dl-quality", scale=2)
    count = gr.Markdown(count_selected(db, [], ["success"], 1), elem_id="dl-count")
    gr.Markdown("### 2 · Train")
    with gr.Row():
        epochs = gr.Number(value=TrainConfig().epochs, precision=0, minimum=1, label="Epochs", elem_id="dl-epochs")
        out = gr.Textbox(label="Checkpoint folder", placeholder="blank: a new folder under the data dir's policies/",
                         elem_id="dl-out", scale=3)
        train = gr.Button("Train", variant="primary", elem_id="dl-train")
        cancel = gr.Button("Cancel training", elem_id="dl-cancel")
    train_state = gr.Markdown(elem_id="dl-progress")
    plot = gr.Image(label="Training curves (redrawn every epoch)", interactive=False, elem_id="dl-plot", height=320,
                    visible=False)
    gr.Markdown("### 3 · Evaluate (on its own sim robot, off the live one)")
    with gr.Row():
        policy = gr.Textbox(label="Checkpoint folder to evaluate", elem_id="dl-eval-policy", scale=3)
        episodes = gr.Number(value=3, precision=0, minimum=1, label="Episodes per task", elem_id="dl-eval-episodes")
        seed = gr.Number(value=1000, precision=0, minimum=0, label="First seed (unseen)", elem_id="dl-eval-seed")
        limit = gr.Number(value=120, minimum=10, label="Time limit per episode (s)", elem_id="dl-eval-limit")
        evaluate = gr.Button("Evaluate", variant="primary", elem_id="dl-evaluate")
    eval_state = gr.Markdown(elem_id="dl-eval-progress")
    with gr.Row():
        results_plot = gr.Plot(label="Success rate per task", elem_id="dl-results-plot", visible=False)
        results = gr.Dataframe(headers=RESULT_COLUMNS, interactive=False, elem_id="dl-results", visible=False)
    timer = gr.Timer(1.0, active=False)
    shown_plot, shown_rows = gr.State(None), gr.State(None)  # what the page shows: redraw only on change

    filters = [tasks, status, quality]
    for widget in filters:
        widget.change(lambda t, s, q: count_selected(db, t, s, q), filters, [count], show_progress="hidden")
    tab.select(lambda t, s, q: count_selected(db, t, s, q), filters, [count], show_progress="hidden")  # new logs

    def do_train(out_dir, n_epochs, task_names, statuses, min_quality):
        from distill.dataset import DistillError

        try:
            folder = jobs.start_training(out_dir or "", int(n_epochs or 0), task_names, statuses, min_quality)
        except (DistillError, StorageError, ValueError) as e:
            raise fail(e)
        gr.Info(f"Training into {folder}: the curves appear after the first epoch.")
        return folder, gr.Image(value=None, visible=False), None

    train.click(do_train, [out, epochs, tasks, status, quality], [out, plot, shown_plot])

    def do_cancel():
        if jobs.train is None or not jobs.train.running:
            raise gr.Error("No training is running.", duration=8)
        jobs.train.cancel()

    cancel.click(do_cancel, None, None)

    def do_evaluate(policy_dir, n, first_seed, limit_s):
        from distill.dataset import DistillError

        try:
            names = jobs.start_evaluation(policy_dir or "", int(n or 0), int(first_seed or 0), float(limit_s or 120))
        except (DistillError, ValueError) as e:
            raise fail(e)
        gr.Info(f"Evaluating on {', '.join(names)}: the policy, then the scripted coach, on the same seeds.")

    evaluate.click(do_evaluate, [policy, episodes, seed, limit], None)

    def refresh(last_plot: float | None, last_rows: str | None, policy_dir: str):
        """Redraw only what changed: the plot when its file is newer, the results when a task finished."""
        png = Path(jobs.train_out or "") / PLOT
        stamp = png.stat().st_mtime if jobs.train_out and png.is_file() else None
        plot_out = gr.Image(value=str(png), visible=True) if stamp and stamp != last_plot else gr.skip()
        rows = results_rows(jobs)
        key = json.dumps(rows)
        if rows and key != last_rows:
            res = (gr.Plot(value=results_figure(rows), visible=True), gr.Dataframe(value=rows, visible=True))
        else:
            res = (gr.skip(), gr.skip())
        finished = jobs.train is not None and not jobs.train.running and jobs.train.results
        fill = jobs.train_out if finished and not policy_dir else gr.skip()
        return (training_md(jobs), plot_out, stamp or last_plot, progress_md(jobs.evaluation, "Evaluating"), *res,
                key if rows else last_rows, fill)

    timer.tick(refresh, [shown_plot, shown_rows, policy],
               [train_state, plot, shown_plot, eval_state, results_plot, results, shown_rows, policy],
               show_progress="hidden", concurrency_limit=None)
    return timer
