"""The Gradio page: puts the tabs together, one module each: Coach (`app/coach_tab.py`), Episodes
(`app/episodes_tab.py`), Autonomous (`app/autonomous_tab.py`) and Distill (`app/distill_tab.py`).
What their handlers share (who acts, the toast for a mistake) is `app/handlers.py`.
"""

from __future__ import annotations

import gradio as gr

from app.autonomous_tab import autonomous_tab
from app.coach_tab import coach_tab
from app.distill_tab import distill_tab
from app.episodes_tab import episodes_tab
from app.handlers import fail, user_of
from coaching.detector import NO_DETECTOR, Detector
from coaching.session import CoachingSession
from storage import Database


def build_page(session: CoachingSession, db: Database, task_families: dict[str, str],
               detector: Detector = NO_DETECTOR) -> gr.Blocks:
    """`task_families` maps the robot's task families to a default task text; `detector` is what the
    autonomous policy sees the items with."""
    with gr.Blocks(title="coachlab", delete_cache=(120, 300)) as page:
        with gr.Tab("Coach") as coach:
            timers = {coach: coach_tab(session, task_families, page)}
        with gr.Tab("Episodes") as episodes:
            timers[episodes] = episodes_tab(db, session.description.cameras, episodes)
        with gr.Tab("Autonomous") as autonomous:
            timers[autonomous] = autonomous_tab(session, db, task_families, autonomous, user_of, fail, detector)
        with gr.Tab("Distill") as distill:
            timers[distill] = distill_tab(db, task_families, distill, fail)
        # Each tab refreshes itself only while in view: a hidden tab's timer would cost the server a
        # queued event a second per open tab, time the control loop shares the GIL with (5 tabs with
        # every timer running: the loop's tick p95 went from 25 to 80 ms).
        for tab in timers:
            tab.select(lambda shown=tab: [gr.Timer(active=other is shown) for other in timers], None,
                       list(timers.values()), show_progress="hidden")
    return page
