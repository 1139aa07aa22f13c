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
            coach_tab(session, task_families, page)
        with gr.Tab("Episodes") as episodes:
            episodes_refresh = episodes_tab(db, session.description.cameras, episodes)
        with gr.Tab("Autonomous") as autonomous:
            autonomous_tab(session, db, task_families, autonomous, user_of, fail, detector)
        with gr.Tab("Distill") as distill:
            distill_tab(db, task_families, distill, fail)
        for other in (coach, autonomous, distill):  # the Episodes list refreshes itself only while in view
            other.select(lambda: gr.Timer(active=False), None, episodes_refresh, show_progress="hidden")
    return page
