"""The Gradio page: a Coach tab (live cameras, subtasks, previews, pause/stop, timeline, episode
start and end), an Episodes tab (filter, replay with a scrubber, edit tags), and the Autonomous
and Distill tabs (`app/autonomous_tab.py`, `app/distill_tab.py`).

Handlers only translate between widgets and `CoachingSession` / storage queries; a person's
mistake comes back as one sentence in a toast (`gr.Error`), and the robot holds meanwhile.
"""

from __future__ import annotations

import getpass
import html
from typing import Any

import gradio as gr

from app.autonomous_tab import autonomous_tab
from app.distill_tab import distill_tab
from app.page_assets import camera_html
from coaching.session import SPEEDS, CoachingSession, EpisodeSettings, SessionError
from storage import Database, StorageError, edit_annotations, list_episodes, load_episode
from storage.vocab import STATUSES

TIMELINE_COLUMNS = ["segment", "at (s)", "source", "subtask", "outcome", "mistake", "by"]
EPISODE_COLUMNS = ["id", "task", "status", "mode", "quality", "steps", "segments", "started", "by"]
def _local_user() -> str:
    try:
        return getpass.getuser() or "local"
    except (KeyError, OSError):  # a container user with no passwd entry
        return "local"


LOCAL_USER = _local_user()


def _user(request: gr.Request | None) -> str:
    return (request.username if request is not None and request.username else None) or LOCAL_USER


def _fail(err: Exception) -> gr.Error:
    return gr.Error(str(err), duration=8)


def build_page(session: CoachingSession, db: Database, scenes: dict[str, str]) -> gr.Blocks:
    """`scenes` maps the robot's scene names (the sim's task families) to a default task text."""
    cams = session.description.cameras
    with gr.Blocks(title="coachlab", delete_cache=(120, 300)) as page:
        with gr.Tab("Coach"):
            _coach_tab(session, cams, scenes)
        with gr.Tab("Episodes"):
            _episodes_tab(db, cams)
        with gr.Tab("Autonomous") as autonomous:
            autonomous_tab(session, db, scenes, autonomous, _user, _fail)
        with gr.Tab("Distill") as distill:
            distill_tab(db, scenes, distill, _fail)
    return page


# -- Coach tab ------------------------------------------------------------------------------------
def _coach_tab(session: CoachingSession, cams: tuple[str, ...], scenes: dict[str, str]) -> None:
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
            scene = gr.Dropdown(list(scenes), value=next(iter(scenes)), label="Scene (sim task family)",
                                allow_custom_value=True, elem_id="cl-scene")
            task = gr.Textbox(value=next(iter(scenes.values())), label="Task", elem_id="cl-task", scale=3)
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
            seg = session.send_subtask(text, _user(request), source=source, with_subgoals=with_goals)
        except SessionError as e:
            raise _fail(e)
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
            session.try_again(_user(request))
        except SessionError as e:
            raise _fail(e)
        return recent_texts, timeline_rows()

    again.click(do_again, [recent], [recent, timeline], show_progress="hidden")

    def do_preview(text: str, progress=gr.Progress()):
        progress(0.1, desc="imagining the end of this subtask")
        try:
            result = session.preview(text)
        except SessionError as e:
            raise _fail(e)
        return [result.images.get(c) for c in cams]

    preview.click(do_preview, [subtask], goal_images)

    def control(action: str):
        def handler(request: gr.Request):
            try:
                getattr(session, action)(_user(request))
            except SessionError as e:
                raise _fail(e)
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
                session.mark_segment(seg_id, _user(request), mistake=True)
            else:
                session.mark_segment(seg_id, _user(request), outcome="failure" if how == "failed" else "success")
        except (SessionError, StorageError) as e:
            raise _fail(e)
        gr.Info(f"Segment {seg_id} marked {how}.")
        return timeline_rows()

    timeline.select(do_mark, [mark_as], [timeline], show_progress="hidden")
    scene.change(lambda s: scenes.get(s, gr.skip()), [scene], [task], show_progress="hidden")

    def do_start(scene_name, task_text, seed_value, speed_value, quality_value, mode_value, request: gr.Request):
        settings = EpisodeSettings(task=task_text, scene=str(scene_name or ""), seed=int(seed_value or 0),
                                   speed=speed_value, quality=int(quality_value), control_mode=mode_value)
        try:
            episode_id = session.start_episode(settings, _user(request))
        except SessionError as e:
            raise _fail(e)
        gr.Info(f"Episode {episode_id} started: type the first subtask.")
        return [], gr.Dataset(samples=[]), timeline_rows(), *[None for _ in cams]

    start.click(do_start, [scene, task, seed, speed, quality, mode], [recent, repeats, timeline, *goal_images])

    def do_end(outcome_value, quality_value, notes_value, request: gr.Request):
        try:
            episode_id = session.end_episode(outcome_value, _user(request), quality=int(quality_value),
                                             notes=notes_value or None)
        except SessionError as e:
            raise _fail(e)
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


# -- Episodes tab ---------------------------------------------------------------------------------
def _episodes_tab(db: Database, cams: tuple[str, ...]) -> None:
    chosen = gr.State(None)
    with gr.Row():
        f_task = gr.Textbox(label="Task contains", elem_id="ep-task")
        f_status = gr.Dropdown(["any", *STATUSES], value="any", label="Status")
        f_quality = gr.Slider(1, 5, value=1, step=1, label="Quality at least")
        refresh = gr.Button("Refresh", elem_id="ep-refresh")
    table = gr.Dataframe(headers=EPISODE_COLUMNS, interactive=False, label="Episodes (click one to replay it)",
                         elem_id="ep-table", wrap=True)
    with gr.Column(visible=False) as replay:
        title = gr.Markdown(elem_id="ep-title")
        with gr.Row():
            frames = [gr.Image(label=c, interactive=False, height=336, format="jpeg", elem_id=f"ep-frame-{c}")
                      for c in cams]
            moment = gr.Markdown(elem_id="ep-moment")
        scrub = gr.Slider(0, 1, value=0, step=1, label="Step", elem_id="ep-scrub")
        with gr.Row():
            e_status = gr.Radio(["success", "failure", "aborted"], label="Outcome")
            e_quality = gr.Slider(1, 5, step=1, label="Quality")
            e_notes = gr.Textbox(label="Notes", scale=2)
            save = gr.Button("Save tags", elem_id="ep-save")

    def rows(task_text: str, status: str, min_quality: float):
        try:
            found = list_episodes(db, task=task_text or None, status=None if status == "any" else status,
                                  min_quality=int(min_quality) if min_quality > 1 else None, limit=200)
        except StorageError as e:
            raise _fail(e)
        return [[e.id, e.task, e.status, e.mode, e.quality, e.num_steps, e.num_segments,
                 e.started_at.strftime("%Y-%m-%d %H:%M:%S") if e.started_at else "", e.user] for e in found]

    filters = [f_task, f_status, f_quality]
    refresh.click(rows, filters, [table])
    f_status.change(rows, filters, [table])

    def show(episode_id: int, step: int):
        try:
            record = load_episode(db, episode_id)
        except StorageError as e:
            raise _fail(e)
        images = [record.frame(c, step) if step < record.frame_count(c) else None for c in cams]
        steps = record.steps(step, step + 1)
        seg_id = int(steps.segment_id[0]) if len(steps.index) else -1
        seg = next((s for s in record.segments if s.id == seg_id), None)
        t = f"{steps.t[0]:.1f} s" if len(steps.index) else ""
        text = (f"**{t}**\n\n**subtask:** {html.escape(seg.text)}\n\n{seg.source}"
                f"{', ' + seg.outcome if seg.outcome else ''}{', mistake' if seg.mistake else ''}"
                if seg else f"**{t}**\n\n*no subtask active*")
        return images, text

    def open_episode(table_value, evt: gr.SelectData):
        try:
            episode_id = int(table_value.iloc[evt.index[0], 0])
            record = load_episode(db, episode_id)
        except (StorageError, IndexError, ValueError) as e:
            raise _fail(e)
        s = record.summary
        images, text = show(episode_id, 0)
        return (episode_id, gr.Column(visible=True), f"### Episode {s.id}: {html.escape(s.task)}",
                gr.Slider(0, max(s.num_steps - 1, 0), value=0, step=1), *images, text,
                s.status if s.status in ("success", "failure", "aborted") else None, s.quality or 3, s.notes or "")

    table.select(open_episode, [table], [chosen, replay, title, scrub, *frames, moment, e_status, e_quality, e_notes])

    def scrub_to(episode_id, step):
        if episode_id is None:
            return *[None for _ in cams], ""
        images, text = show(episode_id, int(step))
        return *images, text

    scrub.change(scrub_to, [chosen, scrub], [*frames, moment], show_progress="hidden")

    def save_tags(episode_id, status, quality, notes, request: gr.Request):
        if episode_id is None:
            raise gr.Error("Open an episode first.")
        try:
            edit_annotations(db, episode_id, _user(request), status=status or None, quality=int(quality),
                             notes=notes)
        except (StorageError, ValueError) as e:
            raise _fail(e)
        gr.Info(f"Tags of episode {episode_id} saved.")

    save.click(save_tags, [chosen, e_status, e_quality, e_notes], None)
