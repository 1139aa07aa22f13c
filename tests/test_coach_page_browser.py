"""The Coach page as a coach uses it (issue 21), in a real browser against the real app on the
embedded sim: what the active subtask is doing (running, idle, refused, paused), the timeline's
numbers and outcomes, marks, previews, keys that never fire from another control, toasts that
leave the heading and Stop free, the database light after End, a reloaded tab (it shows the episode,
and still drives it if it drove), one tab driving while others watch. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.ui import send_subtask

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from app.server import AppConfig, CoachingApp

    running = CoachingApp(AppConfig(port=0, db=str(tmp_path_factory.mktemp("coach_page") / "app.db"),
                                    sim_noise=0.0)).start()
    yield running
    running.close()


@pytest.fixture()
def page(browser, app):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(app.url)
    page.wait_for_selector("#cl-start")
    page.wait_for_function("window.coachlab && window.coachlab.status")
    yield page
    if app.session.episode_id is not None:
        app.session.end_episode("aborted", "test")
    page.close()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # the cameras and the heading, as the coach sees them
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _start(page, seed: int | None = None) -> int:
    if seed is not None:
        box = page.locator("#cl-seed input").first
        box.fill(str(seed))
        box.press("Tab")
    page.click("#cl-start")
    page.wait_for_selector('[data-testid="toast-text"]:has-text("started")')
    page.wait_for_function("window.coachlab.status.episode_id")
    return page.evaluate("window.coachlab.status.episode_id")


def _wait_status(page, status: str, timeout_s: float = 30.0) -> None:
    try:
        page.wait_for_function(f"window.coachlab.status.subtask_status === '{status}'", timeout=timeout_s * 1000)
    except Exception as error:  # say what the page showed instead, and what the sim held
        shown = page.evaluate("JSON.stringify(window.coachlab.status)")
        raise AssertionError(f"subtask never {status!r} in {timeout_s} s; the page's status: {shown}") from error


def _cell(page, row: int, col: int) -> str:
    return page.inner_text(f'#cl-timeline [data-testid="cell-{row}-{col}"] >> visible=true').strip()


def _wait_cell(page, row: int, col: int, text: str, timeout_s: float = 15.0) -> None:
    page.locator(f'#cl-timeline [data-testid="cell-{row}-{col}"] >> visible=true').first.wait_for(timeout=timeout_s * 1000)
    end = time.monotonic() + timeout_s
    while _cell(page, row, col) != text:
        assert time.monotonic() < end, f"timeline cell {row},{col} is {_cell(page, row, col)!r}, not {text!r}"
        time.sleep(0.2)


def test_ending_with_a_running_subtask_keeps_the_database_light_green(page, app):
    """Fault 1: End while the subtask runs used to turn the light red ("record_step was called with no episode").
    End comes mid-motion, at a different moment of the arm's motion each time, by button and by F10;
    tests/test_end_of_episode.py times it within the loop's tick."""
    for i in range(10):
        _start(page)
        send_subtask(page, "pick up the white cup")
        _wait_status(page, "running")
        time.sleep(0.15 * (i % 5))
        assert page.evaluate("fetch('/live/status').then(r => r.json())")["subtask_status"] == "running"
        if i % 2:
            page.locator("#cl-live canvas").first.click()  # the page itself has the focus: F10 ends
            page.keyboard.press("F10")
        else:
            page.click("#cl-end")
        page.wait_for_selector('[data-testid="toast-text"]:has-text("saved as success")')
        page.wait_for_function("!window.coachlab.status.episode_id")
        time.sleep(0.6)  # several ticks after the end, and a status poll
        status = page.evaluate("fetch('/live/status').then(r => r.json())")
        assert status["errors"] == [], status["errors"]
        assert page.get_attribute("#cl-lights .cl-light:nth-child(3)", "class") == "cl-light ok"


def test_keys_never_fire_from_another_control(page, app):
    """Fault 3: Esc in the Task family dropdown stopped the robot; F8 in Notes paused it."""
    _start(page)
    send_subtask(page, "pick up the white cup")
    _wait_status(page, "running")
    page.click("#cl-new-episode .label-wrap")  # folded while an episode runs: the coach unfolds it
    page.click("#cl-task-family input")
    time.sleep(0.5)  # the options list is open
    page.keyboard.press("Escape")
    notes = page.locator("#cl-notes input, #cl-notes textarea").first
    notes.click()
    page.keyboard.press("F8")
    page.keyboard.press("F9")
    page.keyboard.press("F10")
    time.sleep(1.0)
    status = page.evaluate("fetch('/live/status').then(r => r.json())")
    assert status["episode_id"] and status["subtask"] == "pick up the white cup" and not status["paused"]
    assert len(status["segments"]) == 1
    assert page.locator('[data-testid="toast-text"]:has-text("No episode")').count() == 0
    assert "F9" in page.inner_text("#cl-keys") and "F10" in page.inner_text("#cl-keys")
    page.locator("#cl-live canvas").first.click()  # the page itself: the keys work
    page.keyboard.press("F9")  # try again
    page.wait_for_function("window.coachlab.status.segments.length === 2 "
                           "&& window.coachlab.status.segments[1].source === 'correction'")
    page.keyboard.press("Escape")
    page.wait_for_function("window.coachlab.status.subtask === null")
    page.keyboard.press("F10")
    page.wait_for_function("!window.coachlab.status.episode_id")


def test_the_heading_says_what_the_subtask_is_doing(page, app):
    """Faults 7, 8, 2, 5: a refused subtask is shown refused (VLA light amber), paused shows a banner in
    words, a subtask done then refused on the continued request is idle, not a failure; the timeline
    numbers segments per episode and logs refused / completed / replaced."""
    _start(page)
    send_subtask(page, "pick up the unicorn")
    _wait_status(page, "refused")
    page.wait_for_selector("#cl-live-info .cl-badge-refused")
    page.wait_for_selector("#cl-live-info .cl-subtask.cl-st-refused")
    page.wait_for_selector("#cl-live-info .cl-note:has-text('The VLA refused')")
    page.wait_for_selector("#cl-lights .cl-light.warn:has-text('VLA')")
    _shot(page, "21-coach-refused")

    send_subtask(page, "pick up the white cup")
    _wait_status(page, "running")
    page.wait_for_selector("#cl-live-info .cl-badge-running")
    page.keyboard.press("F8")
    page.wait_for_selector("#cl-live-info .cl-paused-banner:has-text('PAUSED')")
    assert "\u23f8" not in page.inner_text("#cl-live-info")  # the glyph Chromium drew as an empty box
    _shot(page, "22-coach-paused")
    page.keyboard.press("F8")
    page.wait_for_function("window.coachlab.status.paused === false")
    _wait_status(page, "idle", 40)  # the cup is up: the arm stopped after working
    page.wait_for_selector("#cl-live-info .cl-badge-idle:has-text('likely done')")
    _shot(page, "23-coach-idle")

    send_subtask(page, "put it in the bussing tub")
    _wait_status(page, "running")
    _wait_status(page, "idle", 40)
    time.sleep(1.5)  # the VLA's reply to the continued request ("I'm not holding anything") has come
    assert page.evaluate("window.coachlab.status.subtask_status") == "idle"
    assert page.locator("#cl-live-info .cl-note:not(.cl-note-quiet)").count() == 0  # no red failure line
    page.wait_for_selector("#cl-lights .cl-light.ok:has-text('VLA')")
    _shot(page, "24-coach-done-then-refused")

    send_subtask(page, "pick up the orange cup")
    _wait_status(page, "running")
    send_subtask(page, "pick up the white can")  # cut off while running
    _wait_cell(page, 0, 0, "1")
    _wait_cell(page, 0, 4, "refused")
    _wait_cell(page, 1, 4, "completed")
    _wait_cell(page, 2, 4, "completed")
    _wait_cell(page, 3, 4, "replaced")
    _wait_cell(page, 4, 0, "5")
    _shot(page, "25-coach-timeline")

    page.keyboard.press("F8")  # a new user's trial: Stop while paused left PAUSED over STOPPED
    page.wait_for_selector("#cl-live-info .cl-paused-banner")
    page.keyboard.press("Escape")
    page.wait_for_selector("#cl-live-info .cl-badge-stopped")
    page.wait_for_selector("#cl-live-info .cl-paused-banner", state="detached")
    assert page.evaluate("fetch('/live/status').then(r => r.json())")["paused"] is False


def test_marks_need_a_choice_and_work_after_end(page, app):
    """Fault 11: a stray click marked a segment failed; after End nothing could be marked."""
    from storage import load_episode

    episode_id = _start(page)
    send_subtask(page, "pick up the white cup")
    _wait_cell(page, 0, 4, "running")
    page.locator('#cl-timeline [data-testid="cell-0-3"] >> visible=true').first.click()
    page.wait_for_selector("#cl-picked :text('Segment 1 selected')")
    time.sleep(1.2)
    assert _cell(page, 0, 4) != "failed"  # a click alone marks nothing
    page.click("#cl-end")
    page.wait_for_function("!window.coachlab.status.episode_id")
    page.click("#cl-mark-success")
    _wait_cell(page, 0, 4, "success")
    page.click("#cl-mark-mistake")
    _wait_cell(page, 0, 5, "yes")
    segment = load_episode(app.db, episode_id).segments[0]
    assert segment.outcome == "success" and segment.mistake

    # and in the Episodes tab, numbered as in the Coach tab
    page.get_by_role("tab", name="Episodes").click()
    page.click("#ep-refresh")
    page.wait_for_selector(f'#ep-table [data-testid="cell-0-0"]:has-text("{episode_id}")')
    page.locator('#ep-table [data-testid="cell-0-1"]').click()
    page.wait_for_selector('#ep-segments [data-testid="cell-0-4"]:has-text("success") >> visible=true', timeout=30_000)
    assert page.inner_text('#ep-segments [data-testid="cell-0-0"] >> visible=true').strip() == "1"
    page.click("#ep-mark-failed")  # nothing selected yet: says so, marks nothing
    page.wait_for_selector('[data-testid="toast-text"]:has-text("Click a segment first")')
    page.locator('#ep-segments [data-testid="cell-0-3"] >> visible=true').first.click()
    page.wait_for_selector("#ep-picked :text('Segment 1 selected')")
    page.click("#ep-mark-failed")
    page.wait_for_selector('#ep-segments [data-testid="cell-0-4"]:has-text("failed") >> visible=true')
    assert load_episode(app.db, episode_id).segments[0].outcome == "failure"
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.screenshot(path=str(ARTIFACTS / "32-episodes-marks.png"))


def test_previews_are_labelled_and_cleared(page, app):
    """Fault 6: old previews stayed on screen, unlabelled, after another subtask was sent."""
    _start(page)
    page.locator("#cl-subtask input, #cl-subtask textarea").first.fill("pick up the white cup")
    page.click("#cl-preview")
    page.wait_for_selector("#cl-goal-base img", timeout=60_000)
    page.wait_for_selector("#cl-goal-base :text('pick up the white cup')")
    time.sleep(0.5)  # they are scrolled into view: below the buttons, Preview seemed to do nothing
    box = page.locator("#cl-goal-base img").first.bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= 1000, box
    page.screenshot(path=str(ARTIFACTS / "26-coach-preview-in-view.png"))
    _shot(page, "26-coach-preview")
    send_subtask(page, "pick up the orange cup")
    page.wait_for_selector("#cl-goal-base img", state="detached", timeout=15_000)
    page.wait_for_selector("#cl-goal-wrist img", state="detached")


def test_toasts_leave_the_heading_and_stop_free(page, app):
    """Fault 4: toasts covered the subtask heading and Stop right after Start."""
    page.evaluate("window.scrollTo(0, 0)")
    _start(page)
    page.evaluate("window.scrollTo(0, 0)")
    toast = page.locator('[data-testid="toast-body"] >> visible=true').first.bounding_box()
    for target in ("#cl-live-info", "#cl-stop", "#cl-again", "#cl-subtask", "#cl-end"):
        box = page.locator(target).bounding_box()
        overlap = not (toast["x"] > box["x"] + box["width"] or box["x"] > toast["x"] + toast["width"]
                       or toast["y"] > box["y"] + box["height"] or box["y"] > toast["y"] + toast["height"])
        assert not overlap, f"the toast covers {target}"
    _shot(page, "27-coach-started-toast")


@pytest.mark.parametrize("size", [(1600, 1000), (1280, 800)])
def test_the_cameras_and_the_episode_controls_are_above_the_fold(browser, app, size):
    """A new user's trial: Start episode sat 1450 px below the fold at 1600x1000. The cameras, the
    subtask box, the buttons, Start (no episode) and End (an episode running) all fit the screen."""
    width, height = size
    page = browser.new_page(viewport={"width": width, "height": height})
    try:
        page.goto(app.url)
        page.wait_for_selector("#cl-start")
        page.wait_for_function("window.coachlab && window.coachlab.status")

        def assert_in_view(*targets):
            for target in targets:
                box = page.locator(f"{target} >> visible=true").first.bounding_box()
                assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height, (target, box, size)

        cams = page.locator("canvas[data-camera]").all()
        assert min(c.bounding_box()["width"] for c in cams) >= 0.25 * width, "the cameras are small"
        assert_in_view("canvas[data-camera=base]", "canvas[data-camera=wrist]", "#cl-subtask", "#cl-stop",
                       "#cl-live-info", "#cl-objects", "#cl-start")
        _shot(page, f"32-coach-no-episode-{width}")
        _start(page)
        page.locator("#cl-end >> visible=true").first.wait_for(timeout=5000)
        assert_in_view("#cl-end", "#cl-stop", "#cl-again")
        _shot(page, f"33-coach-episode-{width}")
        assert page.evaluate("Math.min(...[...document.querySelectorAll('#cl-status *, #cl-subtask label')]"
                             ".filter(e => e.offsetParent && e.textContent.trim())"
                             ".map(e => parseFloat(getComputedStyle(e).fontSize)))") >= 13
    finally:
        if app.session.episode_id is not None:
            app.session.end_episode("aborted", "test")
        page.close()


def test_a_reloaded_or_second_tab_shows_the_running_episode(page, app, browser):
    """Fault 9: after a reload the recent subtasks were empty and the form showed seed 0, not the episode's."""
    _start(page, seed=11)
    send_subtask(page, "pick up the red wrapper")
    page.wait_for_function("window.coachlab.status.subtask === 'pick up the red wrapper'")
    page.locator("#cl-subtask input, #cl-subtask textarea").first.fill("pick up the red wrapper")
    page.click("#cl-preview")
    page.wait_for_selector("#cl-goal-base img", timeout=60_000)
    for other in (page, browser.new_page(viewport={"width": 1280, "height": 800})):
        if other is page:
            other.reload()
        else:
            other.goto(app.url)
        other.wait_for_selector("#cl-recent :text('pick up the red wrapper')", timeout=15_000)
        other.wait_for_function("document.querySelector('#cl-seed input').value === '11'", timeout=15_000)
        _wait_cell(other, 0, 3, "pick up the red wrapper")
        other.wait_for_selector("#cl-goal-base img", timeout=15_000)  # the preview, labelled
        other.wait_for_selector("#cl-goal-base :text('pick up the red wrapper')")
        _shot(other, "28-coach-reloaded" if other is page else "29-coach-second-tab-1280")
        if other is not page:
            other.close()


def test_a_reloaded_driving_tab_still_drives(page, app, browser):
    """Fault 10's open question: the tab that drove an episode, once reloaded, watched its own episode."""
    _start(page)
    send_subtask(page, "pick up the white cup")
    page.wait_for_selector("#cl-driving :text('You drive')", timeout=15_000)
    page.reload()
    page.wait_for_selector("#cl-start")
    page.wait_for_function("window.coachlab && window.coachlab.status && window.coachlab.status.episode_id")
    page.wait_for_selector("#cl-driving :text('You drive')", timeout=15_000)
    assert not page.locator("#cl-take-control").is_visible()
    send_subtask(page, "pick up the orange cup")
    page.wait_for_function("window.coachlab.status.subtask === 'pick up the orange cup'", timeout=15_000)
    assert page.locator('[data-testid="toast-text"]:has-text("Another tab")').count() == 0
    _shot(page, "33-coach-reloaded-still-drives")
    other = browser.new_page(viewport={"width": 1280, "height": 800})  # a new tab is another tab: it watches
    try:
        other.goto(app.url)
        other.wait_for_selector("#cl-driving :text('Watching')", timeout=15_000)
        send_subtask(other, "pick up the white can")
        other.wait_for_selector('[data-testid="toast-text"]:has-text("Another tab")')
        assert app.session.status()["subtask"] == "pick up the orange cup"
    finally:
        other.close()


def test_distill_says_one_episode_is_too_few(browser, tmp_path):
    """Fault 13: Distill on one episode showed "None" figures with no word that one is too few."""
    from app.server import AppConfig, CoachingApp

    fresh = CoachingApp(AppConfig(port=0, db=str(tmp_path / "one.db"), sim_noise=0.0, subgoals="none")).start()
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(fresh.url)
        page.wait_for_selector("#cl-start")
        page.wait_for_function("window.coachlab && window.coachlab.status")
        _start(page)
        send_subtask(page, "pick up the red wrapper")
        page.wait_for_function("window.coachlab.status.subtask === 'pick up the red wrapper'")
        page.click("#cl-end")
        page.wait_for_function("!window.coachlab.status.episode_id")
        page.get_by_role("tab", name="Distill").click()
        page.wait_for_selector("#dl-count :text('1 episode selected')", timeout=15_000)
        assert "too few to validate" in page.inner_text("#dl-count")
        _shot(page, "30-distill-one-episode")
        page.close()
    finally:
        fresh.close()


def test_one_tab_drives_and_the_other_watches(page, app, browser):
    """Fault 10: two tabs both drove the robot with no sign of it."""
    _start(page)
    send_subtask(page, "pick up the white cup")
    page.wait_for_selector("#cl-driving :text('You drive')", timeout=15_000)
    other = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        other.goto(app.url)
        other.wait_for_selector("#cl-driving :text('Watching')", timeout=15_000)
        other.wait_for_selector("#cl-take-control >> visible=true")
        _shot(other, "31-coach-watching-tab-1280")
        send_subtask(other, "pick up the orange cup")
        other.wait_for_selector('[data-testid="toast-text"]:has-text("Another tab")')
        assert app.session.status()["subtask"] == "pick up the white cup"  # the watcher's subtask did not run
        other.click("#cl-stop")  # but any tab may stop the robot
        other.wait_for_function("window.coachlab.status.subtask === null")
        other.click("#cl-take-control")
        other.wait_for_selector("#cl-driving :text('You drive')")
        page.wait_for_selector("#cl-driving :text('Watching')", timeout=15_000)
        send_subtask(other, "pick up the orange cup")
        other.wait_for_function("window.coachlab.status.subtask === 'pick up the orange cup'")
        send_subtask(page, "pick up the white can")
        page.wait_for_selector('[data-testid="toast-text"]:has-text("Another tab")')
    finally:
        other.close()


def test_esc_stops_from_the_autonomous_tab_but_not_from_the_episodes_tab(page, app):
    """Fault 3's other half: a shortcut acts on the tab in view (its own Stop), never on a hidden one."""
    _start(page)
    send_subtask(page, "pick up the white cup")
    page.wait_for_function("window.coachlab.status.subtask === 'pick up the white cup'")
    page.get_by_role("tab", name="Episodes").click()
    page.wait_for_selector("#ep-refresh")
    page.keyboard.press("Escape")
    time.sleep(1.0)
    assert app.session.status()["subtask"] == "pick up the white cup"
    page.get_by_role("tab", name="Autonomous").click()
    page.wait_for_selector("#au-stop")
    page.keyboard.press("Escape")  # the Autonomous tab's Stop: the robot holds
    page.wait_for_function("window.coachlab.status.subtask === null")
