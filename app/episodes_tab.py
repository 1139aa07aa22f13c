"""The Episodes tab: the logged episodes (task family, seed, duration, outcome, ...), kept up to date
by itself while the tab is in view; open one to replay it (Play / Pause, a speed, a step slider:
`app/replay_assets.py`), edit its tags (outcome, quality, notes), mark its segments (numbered per episode, as the Coach
tab's timeline: a click selects one, a button marks it), and discard or restore it.

Discarding keeps every row of the episode and writes a `discard` event (who, why); listings, and
so distillation and export, leave it out from then on (`storage/curation.py`). "Show discarded"
lists them, and Restore brings one back.

Handlers only translate between widgets and storage queries; a person's mistake comes back as
one sentence in a toast (`app/handlers.py`).
"""

from __future__ import annotations

import html

import gradio as gr

from app.handlers import MARKS, fail, outcome_word, user_of
from app.replay_assets import player_html
from storage import (Database, EpisodeSummary, StorageError, discard_episode, edit_annotations, list_episodes,
                     load_episode, restore_episode)
from storage.vocab import STATUSES

EPISODE_COLUMNS = ["id", "task", "task family", "seed", "duration", "outcome", "mode", "quality", "steps", "segments",
                   "started", "by"]
SEGMENT_COLUMNS = ["#", "at (s)", "source", "subtask", "outcome", "mistake", "by"]
REFRESH_S = 3.0  # how often the list looks for new and ended episodes


def duration_text(e: EpisodeSummary) -> str:
    """How long the episode ran, as a person reads it; "running" while it runs."""
    if e.status == "running":
        return "running"
    seconds = e.duration_s
    if seconds is None:
        return ""
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def outcome_text(e: EpisodeSummary) -> str:
    return f"{e.status} (discarded)" if e.discarded else e.status


def episode_row(e: EpisodeSummary) -> list:
    return [e.id, e.task, e.task_family or "", "" if e.seed is None else e.seed, duration_text(e), outcome_text(e),
            e.mode, e.quality, e.num_steps, e.num_segments,
            e.started_at.strftime("%Y-%m-%d %H:%M:%S") if e.started_at else "", e.user]


def segment_rows(db: Database, episode_id: int) -> list[list]:
    record = load_episode(db, episode_id)
    return [[g.ordinal + 1, round(g.issued_at, 2), g.source, g.text, outcome_word(g.outcome),
             "yes" if g.mistake else "", g.user or ""] for g in sorted(record.segments, key=lambda g: g.ordinal)]


def title_text(e: EpisodeSummary) -> str:
    facts = [e.task_family, None if e.seed is None else f"seed {e.seed}", duration_text(e), e.status,
             "**discarded**: distillation and export leave it out" if e.discarded else None]
    return f"### Episode {e.id}: {html.escape(e.task)}\n\n" + " · ".join(f for f in facts if f)


def episodes_tab(db: Database, cams: tuple[str, ...], tab: gr.Tab) -> gr.Timer:
    """Build the tab's widgets and events; `cams` are the robot's camera names, in page order; `tab`
    is this tab (selecting it refreshes the list at once). Returns the timer that keeps the list up to
    date, for the page to run only while this tab is in view."""
    chosen = gr.State(None)
    with gr.Row():
        f_task = gr.Textbox(label="Task or task family contains", elem_id="ep-task")
        f_status = gr.Dropdown(["any", *STATUSES], value="any", label="Outcome", elem_id="ep-status")
        f_quality = gr.Slider(1, 5, value=1, step=1, label="Quality at least")
        f_discarded = gr.Checkbox(False, label="Show discarded", elem_id="ep-show-discarded")
        refresh = gr.Button("Refresh", elem_id="ep-refresh", scale=0, min_width=100)
    # the task text wraps in a quarter of the width, so every column fits a 1280 px screen
    table = gr.Dataframe(headers=EPISODE_COLUMNS, interactive=False, elem_id="ep-table", wrap=True, max_height=330,
                         column_widths=["4%", "25%", "10%", "5%", "7%", "7%", "8%", "6%", "5%", "7%", "11%", "5%"],
                         label=f"Episodes, newest first (updated every {REFRESH_S:g} s; click one to replay it)")
    timer = gr.Timer(REFRESH_S, active=False)
    shown_rows = gr.State(None)  # what the table shows: a tick that finds the same spares every tab a re-render
    with gr.Column(visible=False) as replay:
        title = gr.Markdown(elem_id="ep-title")
        player = gr.HTML(elem_id="ep-replay")
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
        with gr.Row():
            reason = gr.Textbox(label="Why discard it (optional, kept with it)", max_lines=1, scale=4,
                                elem_id="ep-discard-reason")
            with gr.Column(scale=1, min_width=200):
                discard = gr.Button("Discard episode", variant="stop", size="sm", elem_id="ep-discard")
                restore = gr.Button("Restore episode", size="sm", visible=False, elem_id="ep-restore")
    picked_number = gr.State(None)

    def rows(task_text: str, status: str, min_quality: float, with_discarded: bool) -> list[list]:
        try:
            found = list_episodes(db, task=task_text or None, status=None if status == "any" else status,
                                  min_quality=int(min_quality) if min_quality > 1 else None, limit=200,
                                  discarded=None if with_discarded else False)
        except StorageError as e:
            raise fail(e)
        return [episode_row(e) for e in found]

    def listed(task_text, status, min_quality, with_discarded, last):
        new = rows(task_text, status, min_quality, with_discarded)
        return (gr.skip(), last) if new == last else (new, new)

    filters = [f_task, f_status, f_quality, f_discarded]
    for event in (refresh.click, f_status.change, f_discarded.change, f_task.submit, f_quality.release):
        event(listed, [*filters, shown_rows], [table, shown_rows], show_progress="hidden")
    timer.tick(listed, [*filters, shown_rows], [table, shown_rows], show_progress="hidden", concurrency_limit=None)

    tab.select(listed, [*filters, shown_rows], [table, shown_rows], show_progress="hidden")

    def summary_of(episode_id: int) -> EpisodeSummary:
        return load_episode(db, episode_id).summary

    def discard_buttons(e: EpisodeSummary):
        return gr.Button(visible=not e.discarded), gr.Button(visible=e.discarded)

    def open_episode(evt: gr.SelectData):
        try:
            episode_id = int(evt.row_value[0])  # the clicked row's own id: the table may have moved since
            s = summary_of(episode_id)
        except (StorageError, IndexError, ValueError, TypeError) as e:
            raise fail(e)
        return (episode_id, gr.Column(visible=True), title_text(s), player_html(episode_id, cams),
                s.status if s.status in ("success", "failure", "aborted") else None, s.quality or 3, s.notes or "",
                segment_rows(db, episode_id), None, "Click a segment to mark it.", "", *discard_buttons(s))

    table.select(open_episode, None, [chosen, replay, title, player, e_status, e_quality, e_notes, segments,
                                      picked_number, picked, reason, discard, restore])

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

    def curate(restoring: bool):
        def handler(episode_id, why, task_text, status, min_quality, with_discarded, request: gr.Request):
            if episode_id is None:
                raise gr.Error("Open an episode first.")
            try:
                if restoring:
                    restore_episode(db, episode_id, user_of(request))
                else:
                    discard_episode(db, episode_id, user_of(request), reason=why)
                s = summary_of(episode_id)
            except StorageError as e:
                raise fail(e)
            gr.Info(f"Episode {episode_id} restored: distillation and export select it again." if restoring else
                    f"Episode {episode_id} discarded: distillation and export leave it out. It is kept, with who "
                    f"discarded it and why; Show discarded lists it, Restore brings it back.")
            new = rows(task_text, status, min_quality, with_discarded)
            return title_text(s), "", *discard_buttons(s), new, new
        return handler

    for button, restoring in ((discard, False), (restore, True)):
        button.click(curate(restoring), [chosen, reason, *filters], [title, reason, discard, restore, table, shown_rows],
                     show_progress="hidden")
    return timer
