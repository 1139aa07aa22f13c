"""The Coach tab: the live cameras, the subtask box (Send, Preview, Send with subgoals, the recent
subtasks to send again), Try again / Pause / Resume / Stop, the subgoal images (labelled with their
subtask, cleared once another is sent), the timeline of segments (numbered per episode, with their
outcome; a click selects one, a button marks it, also after End), and starting and ending an episode.

Handlers only translate between widgets and `CoachingSession`; a person's mistake comes back as
one sentence in a toast (`app/handlers.py`), and the robot holds meanwhile. What the page shows of
the episode (timeline, recent subtasks, the running episode's settings) is read from the session, so
a reloaded or second tab shows the same. One tab drives, the others watch (`app/tab_control.py`).
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from app.handlers import MARKS, fail, outcome_word, user_of
from app.page_assets import cameras_html, lights_html, status_html
from app.tab_control import TAB_KEY_JS, TabControl
from coaching.session import CoachingSession, EpisodeSettings, SessionError
from coaching.settings import SPEEDS
from storage import StorageError

TIMELINE_COLUMNS = ["#", "at (s)", "source", "subtask", "outcome", "mistake", "by"]
RECENT = 8  # recent subtasks offered to send again


def segment_outcome(seg: dict[str, Any], live_status: str) -> str:
    """The timeline's outcome cell: the logged outcome, or for the active segment what it is doing."""
    if seg["end_s"] is None:
        return live_status
    return outcome_word(seg["outcome"])


def recent_texts(segments: list[dict[str, Any]]) -> list[str]:
    """The episode's distinct subtasks a person sent, newest first."""
    texts: list[str] = []
    for seg in reversed(segments):
        if seg["source"] != "policy" and seg["text"] not in texts:
            texts.append(seg["text"])
    return texts[:RECENT]


def coach_tab(session: CoachingSession, task_families: dict[str, str], page: gr.Blocks) -> gr.Timer:
    """Build the tab's widgets and events; `task_families` maps task family names to a default task text;
    `page` is the whole page (its load fills the forms from the session). Returns the timer that
    refreshes the timeline, for the page to run only while this tab is in view."""
    cams = session.description.cameras
    control_of = TabControl(session)
    # Cameras left, as large as the screen allows; beside them what the robot is doing, what it sees and
    # the episode's controls (Start / End, task, tags), so a coach never scrolls to begin or end.
    with gr.Row(equal_height=False, elem_classes="cl-top"):
        with gr.Column(scale=3, min_width=560):
            gr.HTML(cameras_html(tuple(html.escape(c) for c in cams), session.description.image_size),
                    elem_id="cl-live")
            with gr.Row():
                subtask = gr.Textbox(label="Subtask (Enter sends)", max_lines=1, scale=4, elem_id="cl-subtask",
                                     placeholder="one short step, e.g. pick up the … (a click on a name under In view adds it)",
                                     max_length=20_000)
                send = gr.Button("Send", variant="primary", scale=1, elem_id="cl-send")
                preview = gr.Button("Preview", scale=1, elem_id="cl-preview")
                send_goals = gr.Button("Send with subgoals", scale=1, elem_id="cl-send-goals")
            with gr.Row():
                again = gr.Button("Try again (F9)", elem_id="cl-again")
                pause = gr.Button("Pause (F8)", elem_id="cl-pause")
                resume = gr.Button("Resume (F8)", elem_id="cl-resume")
                stop = gr.Button("Stop (Esc)", variant="stop", elem_id="cl-stop")
            with gr.Row():
                driving = gr.Markdown("", elem_id="cl-driving")
                take = gr.Button("Take control", visible=False, size="sm", scale=0, min_width=140,
                                 elem_id="cl-take-control")
            gr.HTML(lights_html("coach"))
        with gr.Column(scale=1, min_width=360, elem_classes="cl-side-col"):
            gr.HTML(status_html("coach", lights=False), elem_id="cl-status")
            with gr.Accordion("New episode", open=session.episode_id is None, elem_id="cl-new-episode") as new_box:
                with gr.Row():
                    task_family = gr.Dropdown(list(task_families), value=next(iter(task_families)), label="Task family",
                                              allow_custom_value=True, elem_id="cl-task-family", min_width=150)
                    seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="cl-seed", min_width=90)
                task = gr.Textbox(value=next(iter(task_families.values())), label="Task", elem_id="cl-task")
                speed = gr.Radio(list(SPEEDS), value="normal", label="Speed")
                with gr.Row():
                    quality = gr.Slider(1, 5, value=5, step=1, label="Quality (1-5)", min_width=150)
                    mode = gr.Dropdown(list(session.description.control_modes),  # one line: the column is narrow
                                       value=session.description.control_modes[0], label="Control mode", min_width=150)
                start = gr.Button("Start episode", variant="primary", elem_id="cl-start")
            with gr.Accordion("End episode", open=True, visible=session.episode_id is not None,
                              elem_id="cl-end-episode") as end_box:
                with gr.Row():
                    outcome = gr.Radio(["success", "failure"], value="success", label="Outcome", elem_id="cl-outcome",
                                       min_width=150)
                    end_quality = gr.Slider(1, 5, value=5, step=1, label="Quality (1-5)", min_width=150)
                notes = gr.Textbox(label="Notes", elem_id="cl-notes")
                end = gr.Button("End episode (F10)", elem_id="cl-end")
    repeats = gr.Dataset(components=[subtask], samples=[], label="Recent subtasks (click to send again)",
                         elem_id="cl-recent", type="values")
    with gr.Row(elem_classes="cl-subgoals"):
        goal_images = [gr.Image(label=f"subgoal: {c}", interactive=False, height=224, elem_id=f"cl-goal-{c}",
                                format="jpeg") for c in cams]
    with gr.Row():
        timeline = gr.Dataframe(headers=TIMELINE_COLUMNS, label="Timeline (click a row, then mark it)",
                                interactive=False, elem_id="cl-timeline", wrap=True)
        with gr.Column(scale=0, min_width=220):
            picked = gr.Markdown("Click a timeline row to mark it.", elem_id="cl-picked")
            mark_success = gr.Button("Mark success", size="sm", elem_id="cl-mark-success")
            mark_failed = gr.Button("Mark failed", size="sm", elem_id="cl-mark-failed")
            mark_mistake = gr.Button("Mark mistake", size="sm", elem_id="cl-mark-mistake")
    timer = gr.Timer(1.0)  # the first tab: in view when the page opens
    selected = gr.State(None)  # the number of the timeline row a click selected
    tab_key = gr.Textbox(visible=False)  # this browser tab's key, filled at page load by TAB_KEY_JS

    def timeline_rows() -> list[list[Any]]:
        status = session.status()
        return [[s["number"] + 1, s["issued_s"], s["source"] + (" +subgoals" if s["with_subgoals"] else ""), s["text"],
                 segment_outcome(s, status["subtask_status"]), "yes" if s["mistake"] else "", s["user"]]
                for s in status["segments"]]

    def recent_samples() -> gr.Dataset:
        return gr.Dataset(samples=[[t] for t in recent_texts(session.status()["segments"])])

    def blank_previews() -> list[Any]:
        return [gr.Image(value=None, label=f"subgoal: {c}") for c in cams]

    def do_send(text: str, request: gr.Request, source: str = "coach", with_goals: bool = False):
        previewed = session.previewed_text
        try:
            control_of.check(request, user_of(request))
            seg = session.send_subtask(text, user_of(request), source=source, with_subgoals=with_goals)
        except SessionError as e:
            raise fail(e)
        # the previews belong to the subtask they imagine: gone once another one is sent
        goals = [gr.skip() for _ in cams] if seg.text == previewed else blank_previews()
        return "", recent_samples(), timeline_rows(), *goals

    sent_outputs = [subtask, repeats, timeline, *goal_images]
    subtask.submit(do_send, [subtask], sent_outputs, show_progress="hidden")
    send.click(do_send, [subtask], sent_outputs, show_progress="hidden")

    def do_send_goals(text: str, request: gr.Request):
        return do_send(text, request, with_goals=True)

    def do_repeat(sample: list[str], request: gr.Request):
        return do_send(sample[0], request)

    send_goals.click(do_send_goals, [subtask], sent_outputs)
    repeats.click(do_repeat, [repeats], sent_outputs, show_progress="hidden")

    def do_again(request: gr.Request):
        previewed = session.previewed_text
        try:
            control_of.check(request, user_of(request))
            seg = session.try_again(user_of(request))
        except SessionError as e:
            raise fail(e)
        goals = [gr.skip() for _ in cams] if seg.text == previewed else blank_previews()
        return recent_samples(), timeline_rows(), *goals

    again.click(do_again, None, [repeats, timeline, *goal_images], show_progress="hidden")

    def do_preview(text: str, progress=gr.Progress()):
        progress(0.1, desc="imagining the end of this subtask")
        try:
            result = session.preview(text)
        except SessionError as e:
            raise fail(e)
        return [gr.Image(value=result.images.get(c), label=f"preview of “{result.text}”: {c}") for c in cams]

    # the previews lie below the buttons: bring them into view, or Preview seems to do nothing (a new user's trial)
    preview.click(do_preview, [subtask], goal_images).success(
        None, js="() => document.querySelector('.cl-subgoals').scrollIntoView({block: 'nearest'})")

    def control(action: str):
        def handler(request: gr.Request):
            try:
                if action == "resume":  # pause and stop: from any tab that sees the robot
                    control_of.check(request, user_of(request))
                getattr(session, action)(user_of(request))
            except SessionError as e:
                raise fail(e)
            return timeline_rows()
        return handler

    for button, action in ((pause, "pause"), (resume, "resume"), (stop, "stop")):
        button.click(control(action), None, [timeline], show_progress="hidden")

    def do_select(evt: gr.SelectData):
        try:
            number = int(evt.row_value[0])  # the clicked row's own number: the table may be a moment stale
        except (TypeError, ValueError, IndexError):
            return None, "Click a timeline row to mark it."
        text = evt.row_value[3] if len(evt.row_value) > 3 else ""
        return number, f"Segment **{number}** selected: {html.escape(str(text))}. Mark it:"

    timeline.select(do_select, None, [selected, picked], show_progress="hidden")

    def mark(how: str):
        def handler(number: int | None, request: gr.Request):
            segments = session.status()["segments"]
            seg = next((s for s in segments if number is not None and s["number"] + 1 == number), None)
            if seg is None:
                raise fail(SessionError("Click a timeline row first, then choose how to mark it."))
            outcome, mistake = MARKS[how]
            try:
                session.mark_segment(seg["id"], user_of(request), outcome=outcome, mistake=mistake)
            except (SessionError, StorageError) as e:
                raise fail(e)
            return timeline_rows(), f"Segment **{number}** marked {how}."
        return handler

    for button, how in ((mark_success, "success"), (mark_failed, "failed"), (mark_mistake, "mistake")):
        button.click(mark(how), [selected], [timeline, picked], show_progress="hidden")
    task_family.change(lambda s: task_families.get(s, gr.skip()), [task_family], [task], show_progress="hidden")

    def do_start(family_name, task_text, seed_value, speed_value, quality_value, mode_value, request: gr.Request):
        settings = EpisodeSettings(task=task_text, task_family=str(family_name or ""), seed=int(seed_value or 0),
                                   speed=speed_value, quality=int(quality_value), control_mode=mode_value)
        try:
            episode_id = session.start_episode(settings, user_of(request))
        except SessionError as e:
            raise fail(e)
        control_of.claim(request, user_of(request))
        gr.Info(f"Episode {episode_id} started: type the first subtask.", duration=4)
        return (gr.Dataset(samples=[]), timeline_rows(), None, "Click a timeline row to mark it.", *blank_previews(),
                *episode_boxes(True))

    # what acts on a running episode is greyed out while none runs (it could only answer with an error);
    # never Stop or Pause: the page learns of an episode another tab or the Autonomous tab started
    # only at its next refresh, and until then Esc and F8 must still reach the robot
    episode_buttons = [send, send_goals, again, resume]
    episode_outputs = [new_box, end_box, *episode_buttons]  # what `episode_boxes` gives values for

    def episode_boxes(running: bool) -> tuple[Any, ...]:
        """New episode folded and End episode shown while one runs, the other way round when none does;
        then `episode_buttons`, usable only while one runs."""
        return (gr.Accordion(open=not running), gr.Accordion(visible=running, open=True),
                *(gr.Button(interactive=running) for _ in episode_buttons))

    start.click(do_start, [task_family, task, seed, speed, quality, mode],
                [repeats, timeline, selected, picked, *goal_images, *episode_outputs])

    def do_end(outcome_value, quality_value, notes_value, request: gr.Request):
        try:
            control_of.check(request, user_of(request))
            episode_id = session.end_episode(outcome_value, user_of(request), quality=int(quality_value),
                                             notes=notes_value or None)
        except SessionError as e:
            raise fail(e)
        gr.Info(f"Episode {episode_id} saved as {outcome_value}; its segments can still be marked.", duration=4)
        return "", *episode_boxes(False)

    end.click(do_end, [outcome, end_quality, notes], [notes, *episode_outputs])
    shown = gr.State(None)

    def refresh(last: Any, request: gr.Request):
        """The timeline, the recent subtasks and who drives, as the session has them; unchanged: spare
        every tab a re-render."""
        rows, (says, may_take) = timeline_rows(), control_of.describe(request)
        running = session.episode_id is not None
        if [rows, says, running] == last:
            return *(gr.skip() for _ in refresh_outputs[:-1]), last
        # the episode boxes only when an episode began or ended (another tab's Start, a reload): a
        # coach's own folding of them stays as it is
        boxes = episode_boxes(running) if last is None or last[2] != running else \
            tuple(gr.skip() for _ in episode_outputs)
        return rows, recent_samples(), says, gr.Button(visible=may_take), *boxes, [rows, says, running]

    refresh_outputs = [timeline, repeats, driving, take, *episode_outputs, shown]
    timer.tick(refresh, [shown], refresh_outputs, show_progress="hidden", concurrency_limit=None)

    def do_take(request: gr.Request):
        if session.episode_id is None:
            raise fail(SessionError("No episode is running; start one with Start episode."))
        control_of.claim(request, user_of(request))
        says, may_take = control_of.describe(request)
        return says, gr.Button(visible=may_take)

    take.click(do_take, None, [driving, take], show_progress="hidden")

    def load_running():
        """A page opened or reloaded mid-episode shows that episode's settings (not the defaults) and
        the latest preview."""
        settings = session.status()["settings"] if session.episode_id is not None else None
        if settings is None:
            return [gr.skip()] * (6 + len(cams))
        shown = session.latest_preview
        goals = ([gr.Image(value=shown.images.get(c), label=f"preview of “{shown.text}”: {c}") for c in cams]
                 if shown is not None else [gr.skip() for _ in cams])
        return (settings["task_family"], settings["task"], settings["seed"], settings["speed"],
                settings["quality"] or 5, settings["control_mode"], *goals)

    page.load(load_running, None, [task_family, task, seed, speed, quality, mode, *goal_images],
              show_progress="hidden")

    def know_tab(key: str, request: gr.Request):
        """A reloaded tab is still the tab it was: if it drove, it drives (`app/tab_control.py`)."""
        control_of.remember(request, key)
        says, may_take = control_of.describe(request)
        return says, gr.Button(visible=may_take)

    page.load(know_tab, [tab_key], [driving, take], js=TAB_KEY_JS, show_progress="hidden")
    return timer
