"""The Coach tab: the live cameras, the subtask box (Send, Preview, Send with subgoals, the recent
subtasks to send again), Try again / Pause / Resume / Stop, the subgoal images, the timeline of
segments (a click marks one failed, a mistake or a success), and starting and ending an episode.

Handlers only translate between widgets and `CoachingSession`; a person's mistake comes back as
one sentence in a toast (`app/handlers.py`), and the robot holds meanwhile.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from app.handlers import fail, user_of
from app.page_assets import camera_html
from coaching.session import CoachingSession, EpisodeSettings, SessionError
from coaching.settings import SPEEDS
from storage import StorageError

TIMELINE_COLUMNS = ["segment", "at (s)", "source", "subtask", "outcome", "mistake", "by"]


def coach_tab(session: CoachingSession, task_families: dict[str, str]) -> None:
    """Build the tab's widgets and events; `task_families` maps task family names to a default task text."""
    cams = session.description.cameras
    recent = gr.State([])
    gr.HTML(camera_html(tuple(html.escape(c) for c in cams), session.description.image_size), elem_id="cl-live")
    with gr.Row():
        subtask = gr.Textbox(label="Subtask (Enter sends)", placeholder="pick up the red cup", max_lines=1,
                             scale=4, elem_id="cl-subtask", max_length=20_000)
        send = gr.Button("Send", variant="primary", scale=1, elem_id="cl-send")
        preview = gr.Button("Preview", scale=1, elem_id="cl-preview")
        send_goals = gr.Button("Send with subgoals", scale=1, elem_id="cl-send-goals")
    with gr.Row():
        again = gr.Button("Try again", elem_id="cl-again")
        pause = gr.Button("Pause (F8)", elem_id="cl-pause")
        resume = gr.Button("Resume (F8)", elem_id="cl-resume")
        stop = gr.Button("Stop (Esc)", variant="stop", elem_id="cl-stop")
    repeats = gr.Dataset(components=[subtask], samples=[], label="Recent subtasks (click to send again)",
                         elem_id="cl-recent", type="values")
    with gr.Row(elem_classes="cl-subgoals"):
        goal_images = [gr.Image(label=f"subgoal: {c}", interactive=False, height=224, elem_id=f"cl-goal-{c}",
                                format="jpeg") for c in cams]
    with gr.Row():
        timeline = gr.Dataframe(headers=TIMELINE_COLUMNS, label="Timeline (click a row to mark it)", interactive=False,
                                elem_id="cl-timeline", wrap=True)
        with gr.Column(scale=0, min_width=220):
            mark_as = gr.Radio(["failed", "mistake", "success"], value="failed", label="A click marks the segment as")
    with gr.Accordion("New episode", open=True):
        with gr.Row():
            task_family = gr.Dropdown(list(task_families), value=next(iter(task_families)), label="Task family",
                                allow_custom_value=True, elem_id="cl-task-family")
            task = gr.Textbox(value=next(iter(task_families.values())), label="Task", elem_id="cl-task", scale=3)
            seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="cl-seed")
        with gr.Row():
            speed = gr.Radio(list(SPEEDS), value="normal", label="Speed")
            quality = gr.Slider(1, 5, value=5, step=1, label="Quality (1-5)")
            mode = gr.Radio(list(session.description.control_modes), value=session.description.control_modes[0],
                            label="Control mode")
            start = gr.Button("Start episode", variant="primary", elem_id="cl-start")
    with gr.Accordion("End episode", open=True):
        with gr.Row():
            outcome = gr.Radio(["success", "failure"], value="success", label="Outcome", elem_id="cl-outcome")
            end_quality = gr.Slider(1, 5, value=5, step=1, label="Quality (1-5)")
            notes = gr.Textbox(label="Notes", scale=3, elem_id="cl-notes")
            end = gr.Button("End episode", elem_id="cl-end")
    timer = gr.Timer(1.0)

    def timeline_rows() -> list[list[Any]]:
        return [[s["id"], s["issued_s"], s["source"] + (" +subgoals" if s["with_subgoals"] else ""), s["text"],
                 s["outcome"] or ("running" if s["end_s"] is None else ""), "yes" if s["mistake"] else "", s["user"]]
                for s in session.status()["segments"]]

    def do_send(text: str, recent_texts: list[str], request: gr.Request, source: str = "coach",
                with_goals: bool = False):
        try:
            seg = session.send_subtask(text, user_of(request), source=source, with_subgoals=with_goals)
        except SessionError as e:
            raise fail(e)
        recent_texts = [seg.text] + [t for t in recent_texts if t != seg.text][:7]
        return "", recent_texts, gr.Dataset(samples=[[t] for t in recent_texts]), timeline_rows()

    sent_outputs = [subtask, recent, repeats, timeline]
    subtask.submit(do_send, [subtask, recent], sent_outputs, show_progress="hidden")
    send.click(do_send, [subtask, recent], sent_outputs, show_progress="hidden")

    def do_send_goals(text: str, recent_texts: list[str], request: gr.Request):
        return do_send(text, recent_texts, request, with_goals=True)

    def do_repeat(sample: list[str], recent_texts: list[str], request: gr.Request):
        return do_send(sample[0], recent_texts, request)

    send_goals.click(do_send_goals, [subtask, recent], sent_outputs)
    repeats.click(do_repeat, [repeats, recent], sent_outputs, show_progress="hidden")

    def do_again(recent_texts: list[str], request: gr.Request):
        try:
            session.try_again(user_of(request))
        except SessionError as e:
            raise fail(e)
        return recent_texts, timeline_rows()

    again.click(do_again, [recent], [recent, timeline], show_progress="hidden")

    def do_preview(text: str, progress=gr.Progress()):
        progress(0.1, desc="imagining the end of this subtask")
        try:
            result = session.preview(text)
        except SessionError as e:
            raise fail(e)
        return [result.images.get(c) for c in cams]

    preview.click(do_preview, [subtask], goal_images)

    def control(action: str):
        def handler(request: gr.Request):
            try:
                getattr(session, action)(user_of(request))
            except SessionError as e:
                raise fail(e)
            return timeline_rows()
        return handler

    for button, action in ((pause, "pause"), (resume, "resume"), (stop, "stop")):
        button.click(control(action), None, [timeline], show_progress="hidden")

    def do_mark(how: str, evt: gr.SelectData, request: gr.Request):
        rows = timeline_rows()
        try:
            seg_id = int(evt.row_value[0])  # the clicked row's own id: the table may be a moment stale
        except (TypeError, ValueError, IndexError):
            return rows
        try:
            if how == "mistake":
                session.mark_segment(seg_id, user_of(request), mistake=True)
            else:
                session.mark_segment(seg_id, user_of(request), outcome="failure" if how == "failed" else "success")
        except (SessionError, StorageError) as e:
            raise fail(e)
        gr.Info(f"Segment {seg_id} marked {how}.")
        return timeline_rows()

    timeline.select(do_mark, [mark_as], [timeline], show_progress="hidden")
    task_family.change(lambda s: task_families.get(s, gr.skip()), [task_family], [task], show_progress="hidden")

    def do_start(family_name, task_text, seed_value, speed_value, quality_value, mode_value, request: gr.Request):
        settings = EpisodeSettings(task=task_text, task_family=str(family_name or ""), seed=int(seed_value or 0),
                                   speed=speed_value, quality=int(quality_value), control_mode=mode_value)
        try:
            episode_id = session.start_episode(settings, user_of(request))
        except SessionError as e:
            raise fail(e)
        gr.Info(f"Episode {episode_id} started: type the first subtask.")
        return [], gr.Dataset(samples=[]), timeline_rows(), *[None for _ in cams]

    start.click(do_start, [task_family, task, seed, speed, quality, mode], [recent, repeats, timeline, *goal_images])

    def do_end(outcome_value, quality_value, notes_value, request: gr.Request):
        try:
            episode_id = session.end_episode(outcome_value, user_of(request), quality=int(quality_value),
                                             notes=notes_value or None)
        except SessionError as e:
            raise fail(e)
        gr.Info(f"Episode {episode_id} saved as {outcome_value}.")
        return ""

    end.click(do_end, [outcome, end_quality, notes], [notes])
    shown = gr.State(None)

    def refresh_timeline(last: Any):
        rows = timeline_rows()
        if rows == last:
            return gr.skip(), last  # unchanged: spare every open tab a table re-render
        return rows, rows

    timer.tick(refresh_timeline, [shown], [timeline, shown], show_progress="hidden", concurrency_limit=None)
