"""The Episodes tab: filter the logged episodes, replay one with a step scrubber (a frame per
camera and the subtask active at that step), edit its tags (outcome, quality, notes) and mark its
segments (numbered per episode, as the Coach tab's timeline: a click selects one, a button marks it).

Handlers only translate between widgets and storage queries; a person's mistake comes back as
one sentence in a toast (`app/handlers.py`).
"""

from __future__ import annotations

import html

import gradio as gr

from app.handlers import MARKS, fail, outcome_word, user_of
from storage import DamagedFrame, Database, StorageError, edit_annotations, list_episodes, load_episode
from storage.vocab import STATUSES

EPISODE_COLUMNS = ["id", "task", "status", "mode", "quality", "steps", "segments", "started", "by"]
SEGMENT_COLUMNS = ["#", "at (s)", "source", "subtask", "outcome", "mistake", "by"]


def segment_rows(db: Database, episode_id: int) -> list[list]:
    record = load_episode(db, episode_id)
    return [[g.ordinal + 1, round(g.issued_at, 2), g.source, g.text, outcome_word(g.outcome),
             "yes" if g.mistake else "", g.user or ""] for g in sorted(record.segments, key=lambda g: g.ordinal)]


def episodes_tab(db: Database, cams: tuple[str, ...]) -> None:
    """Build the tab's widgets and events; `cams` are the robot's camera names, in page order."""
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
        with gr.Row():
            segments = gr.Dataframe(headers=SEGMENT_COLUMNS, interactive=False, elem_id="ep-segments", wrap=True,
                                    label="Segments (click a row, then mark it)")
            with gr.Column(scale=0, min_width=220):
                picked = gr.Markdown("Click a segment to mark it.", elem_id="ep-picked")
                mark_buttons = {how: gr.Button(f"Mark {how}", size="sm", elem_id=f"ep-mark-{how}") for how in MARKS}
    picked_number = gr.State(None)

    def rows(task_text: str, status: str, min_quality: float):
        try:
            found = list_episodes(db, task=task_text or None, status=None if status == "any" else status,
                                  min_quality=int(min_quality) if min_quality > 1 else None, limit=200)
        except StorageError as e:
            raise fail(e)
        return [[e.id, e.task, e.status, e.mode, e.quality, e.num_steps, e.num_segments,
                 e.started_at.strftime("%Y-%m-%d %H:%M:%S") if e.started_at else "", e.user] for e in found]

    filters = [f_task, f_status, f_quality]
    refresh.click(rows, filters, [table])
    f_status.change(rows, filters, [table])

    def show(episode_id: int, step: int):
        try:
            record = load_episode(db, episode_id)
        except StorageError as e:
            raise fail(e)
        images = []
        for c in cams:
            try:
                images.append(record.frame(c, step) if step < record.frame_count(c) else None)
            except DamagedFrame:  # shown blank and said below; the other cameras and steps still replay
                images.append(None)
        steps = record.steps(step, step + 1)
        seg_id = int(steps.segment_id[0]) if len(steps.index) else -1
        seg = next((s for s in record.segments if s.id == seg_id), None)
        t = f"{steps.t[0]:.1f} s" if len(steps.index) else ""
        text = (f"**{t}**\n\n**subtask:** {html.escape(seg.text)}\n\n{seg.source}"
                f"{', ' + seg.outcome if seg.outcome else ''}{', mistake' if seg.mistake else ''}"
                if seg else f"**{t}**\n\n*no subtask active*")
        for d in record.damaged:
            text += f"\n\n*{html.escape(str(d))}*"
        return images, text

    def open_episode(table_value, evt: gr.SelectData):
        try:
            episode_id = int(table_value.iloc[evt.index[0], 0])
            record = load_episode(db, episode_id)
        except (StorageError, IndexError, ValueError) as e:
            raise fail(e)
        s = record.summary
        images, text = show(episode_id, 0)
        return (episode_id, gr.Column(visible=True), f"### Episode {s.id}: {html.escape(s.task)}",
                gr.Slider(0, max(s.num_steps - 1, 0), value=0, step=1), *images, text,
                s.status if s.status in ("success", "failure", "aborted") else None, s.quality or 3, s.notes or "",
                segment_rows(db, episode_id), None, "Click a segment to mark it.")

    table.select(open_episode, [table], [chosen, replay, title, scrub, *frames, moment, e_status, e_quality, e_notes,
                                         segments, picked_number, picked])

    def pick(evt: gr.SelectData):
        try:
            number = int(evt.row_value[0])
        except (TypeError, ValueError, IndexError):
            return None, "Click a segment to mark it."
        return number, f"Segment **{number}** selected: {html.escape(str(evt.row_value[3]))}. Mark it:"

    segments.select(pick, None, [picked_number, picked], show_progress="hidden")

    def mark(how: str):
        def handler(episode_id, number, request: gr.Request):
            if episode_id is None or number is None:
                raise fail(ValueError("Click a segment first, then choose how to mark it."))
            try:
                record = load_episode(db, episode_id)
                seg = next((g for g in record.segments if g.ordinal + 1 == number), None)
                if seg is None:
                    raise ValueError(f"Episode {episode_id} has no segment {number}.")
                outcome, mistake = MARKS[how]
                edit_annotations(db, episode_id, user_of(request),
                                 segment_outcomes={seg.id: outcome} if outcome else None,
                                 segment_mistakes={seg.id: mistake} if mistake is not None else None)
                return segment_rows(db, episode_id), f"Segment **{number}** marked {how}."
            except (StorageError, ValueError) as e:
                raise fail(e)
        return handler

    for how, button in mark_buttons.items():
        button.click(mark(how), [chosen, picked_number], [segments, picked], show_progress="hidden")

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
            edit_annotations(db, episode_id, user_of(request), status=status or None, quality=int(quality),
                             notes=notes)
        except (StorageError, ValueError) as e:
            raise fail(e)
        gr.Info(f"Tags of episode {episode_id} saved.")

    save.click(save_tags, [chosen, e_status, e_quality, e_notes], None)
