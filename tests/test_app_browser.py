"""The coaching app in a real browser: Debian's chromium driven by Playwright against the real app
(sim robot, sim policy served over ZMQ by a child process, SQLite). Screenshots of the main
screens go to test-artifacts/ so a person can look at them.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench.ui import send_subtask

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from app.server import AppConfig, CoachingApp

    running = CoachingApp(AppConfig(port=0, db=str(tmp_path_factory.mktemp("app") / "app.db"), sim_noise=0.0)).start()
    yield running
    running.close()


@pytest.fixture()
def page(browser, app):
    page = browser.new_page(viewport={"width": 1400, "height": 1700})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs
    page.goto(app.url)
    page.wait_for_selector("#cl-start")
    yield page
    page.close()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _toast(page, needle: str, timeout_s: float = 15.0) -> str:
    page.wait_for_selector(f'[data-testid="toast-text"]:has-text("{needle}")', timeout=timeout_s * 1000)
    return page.inner_text(f'[data-testid="toast-text"]:has-text("{needle}")')


def _see(page, selector: str, timeout_s: float = 30.0) -> None:
    """Wait until an element matching `selector` is visible (tables keep hidden copies of their cells)."""
    page.locator(f"{selector} >> visible=true").first.wait_for(timeout=timeout_s * 1000)


def _canvas(page, camera: str) -> str:
    return page.evaluate(f"document.querySelector('canvas[data-camera=\"{camera}\"]').toDataURL('image/png')")


def _status(page) -> dict:
    page.wait_for_function("window.coachlab && window.coachlab.status")
    return page.evaluate("window.coachlab.status")


def _start_episode(page) -> int:
    # the page's first refresh from the session has landed (it greys Send while no episode runs): a
    # refresh computed before Start and delivered after it would fold the End episode box again
    page.wait_for_function("document.getElementById('cl-send').disabled")
    page.click("#cl-start")
    text = _toast(page, "started")
    return int(text.split("Episode ")[1].split(" ")[0])


def test_coach_an_episode_end_to_end(page, app):
    from storage import load_episode

    page.wait_for_function("window.coachlab && window.coachlab.cams.base && window.coachlab.cams.base.frames > 5 "
                           "&& window.coachlab.cams.wrist.frames > 5")
    _shot(page, "01-coach-idle")
    episode_id = _start_episode(page)
    before = {c: _canvas(page, c) for c in ("base", "wrist")}

    send_subtask(page, "pick up the white cup")
    _see(page, '#cl-timeline :text("pick up the white cup")')
    assert page.input_value("#cl-subtask input, #cl-subtask textarea") == ""  # cleared after sending
    page.wait_for_function("window.coachlab.status && window.coachlab.status.subtask === 'pick up the white cup'")
    time.sleep(3.0)
    after = {c: _canvas(page, c) for c in ("base", "wrist")}
    assert all(before[c] != after[c] for c in before), "both camera views must change as the robot moves"
    _shot(page, "02-coach-moving")

    page.locator("#cl-subtask input, #cl-subtask textarea").first.fill("put the white cup in the bussing tub")
    page.click("#cl-preview")
    page.wait_for_selector("#cl-goal-base img", timeout=60_000)
    page.wait_for_selector("#cl-goal-wrist img")
    _shot(page, "03-coach-preview")
    page.click("#cl-send-goals")
    _see(page, '#cl-timeline :text("coach +subgoals")')

    page.keyboard.press("F8")
    page.wait_for_function("window.coachlab.status.paused === true")
    page.click("#cl-resume")
    page.wait_for_function("window.coachlab.status.paused === false")
    page.keyboard.press("Escape")
    page.wait_for_function("window.coachlab.status.subtask === null")
    page.locator('#cl-timeline [data-testid="cell-0-3"]').click()  # selects the first segment
    page.wait_for_selector("#cl-picked :text('Segment 1 selected')")
    page.click("#cl-mark-failed")
    page.wait_for_selector("#cl-picked :text('marked failed')")

    page.locator("#cl-notes input, #cl-notes textarea").first.fill("white cup went to the tub")
    page.click("#cl-end")
    _toast(page, "saved as success")
    _shot(page, "04-coach-ended")

    page.get_by_role("tab", name="Episodes").click()
    page.click("#ep-refresh")
    page.wait_for_selector(f'#ep-table [data-testid="cell-0-0"]:has-text("{episode_id}")')
    page.locator('#ep-table [data-testid="cell-0-1"]').click()
    page.wait_for_function("window.coachlabReplay.player && window.coachlabReplay.player.shown.base === 0",
                           timeout=30_000)
    first = page.get_attribute("#ep-frame-base", "src")
    # the last step of the first subtask: the arm has moved since step 0, and that subtask is the moment's
    first_segment = min(load_episode(app.db, episode_id).segments, key=lambda g: g.ordinal)
    page.fill("#ep-scrub", str(first_segment.last_step))
    page.wait_for_function("(src) => document.querySelector('#ep-frame-base').src !== src", arg=first)
    _see(page, "#ep-moment :text('pick up the white cup')")
    _shot(page, "05-episodes-replay")

    record = load_episode(app.db, episode_id)
    assert record.summary.status == "success" and record.summary.notes == "white cup went to the tub"
    segments = [(s.text, s.source, s.subgoal_sent, s.outcome) for s in record.segments]
    assert segments[0][:2] == ("pick up the white cup", "coach") and segments[0][3] == "failure"
    assert segments[1][:3] == ("put the white cup in the bussing tub", "coach", True)
    assert {"pause", "resume", "stop", "annotation_edit"} <= {e.kind for e in record.events}
    assert record.summary.num_steps > 60 and record.frame_count("wrist") == record.summary.num_steps


def test_the_coach_sees_what_the_robot_sees(page, app):
    """The objects the detector finds are listed beside the cameras (the names a coach can type), a
    click types one, and "show boxes" draws them over the camera views; the Autonomous tab lists them too."""
    page.wait_for_selector("#cl-objects button.cl-chip", timeout=30_000)
    names = page.eval_on_selector_all("#cl-objects button.cl-chip", "els => els.map(e => e.dataset.label)")
    assert names and all(" " in n for n in names)
    box = page.locator("#cl-subtask input, #cl-subtask textarea").first
    box.fill("pick up the")
    page.click(f'#cl-objects button.cl-chip[data-label="{names[0]}"]')
    assert box.input_value() == f"pick up the {names[0]}"

    def overlay_ink() -> int:
        return page.evaluate("""() => { const c = document.querySelector('canvas[data-overlay="base"]');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }""")

    assert overlay_ink() == 0
    page.check("#cl-objects .cl-boxes-toggle")
    page.wait_for_function("""() => { const c = document.querySelector('canvas[data-overlay="base"]');
        return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some((v, i) => i % 4 == 3 && v); }""")
    assert overlay_ink() > 50
    _shot(page, "05-objects-in-view")
    status = page.evaluate("fetch('/live/objects').then(r => r.json())")
    assert status["error"] is None and status["detect_ms"] is not None
    page.uncheck("#cl-objects .cl-boxes-toggle")
    page.wait_for_function("""() => { const c = document.querySelector('canvas[data-overlay="base"]');
        return !c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some((v, i) => i % 4 == 3 && v); }""")
    box.fill("")

    page.get_by_role("tab", name="Autonomous").click()
    page.wait_for_selector("#au-objects .cl-chip", timeout=30_000)
    page.get_by_role("tab", name="Coach").click()


def test_bad_input_gets_a_clear_message_and_no_crash(page, app):
    # what acts on an episode is greyed out while none runs (never Stop or Pause); Enter still says why
    greyed = "(on) => ['cl-send', 'cl-send-goals', 'cl-again', 'cl-resume'].every(id => " \
             "document.getElementById(id).disabled === !on)"
    page.wait_for_function(greyed, arg=False)
    assert page.evaluate("['cl-stop', 'cl-pause'].every(id => !document.getElementById(id).disabled)")
    send_subtask(page, "pick up the cup")
    _toast(page, "No episode is running")
    _start_episode(page)
    page.wait_for_function(greyed, arg=True)
    send_subtask(page, "   ")
    _toast(page, "Type a subtask first")
    send_subtask(page, "a" * 10_000)
    _toast(page, "keep it under 500")
    script = "<script>alert('x')</script><b>bold</b> pick up the cup"
    send_subtask(page, script)
    _see(page, '#cl-timeline :text("<b>bold</b>")')  # shown as text, not run or rendered
    page.wait_for_function("window.coachlab.status.subtask && window.coachlab.status.subtask.includes('<script>')")
    send_subtask(page, "pick up the unicorn")
    page.wait_for_selector("#cl-live-info .cl-note:has-text('unicorn')", timeout=15_000)
    _shot(page, "06-coach-bad-input")
    assert page.dialogs == []
    assert _status(page)["loop_hz"] > 10  # the loop kept its rate throughout
    page.click("#cl-end")
    _toast(page, "saved as success")
    page.wait_for_function(greyed, arg=False)


def test_login_is_required_off_loopback_and_recorded(browser, tmp_path):
    from app.server import AppConfig, AppConfigError, CoachingApp
    from storage import load_episode

    with pytest.raises(AppConfigError, match="without a login"):
        AppConfig(host="0.0.0.0").check()
    app = CoachingApp(AppConfig(port=0, db=str(tmp_path / "auth.db"), auth=[("ana", "s3cret")], subgoals="none",
                                sim_noise=0.0)).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(app.url + "live/status")
        assert err.value.code == 401
        page = browser.new_page()
        page.goto(app.url)
        page.fill('input[data-testid="textbox"]', "ana")
        page.fill('input[type="password"]', "s3cret")
        page.click('button:has-text("Login")')
        page.wait_for_selector("#cl-start")
        page.wait_for_function("window.coachlab && window.coachlab.cams.base && window.coachlab.cams.base.frames > 3")
        episode_id = _start_episode(page)
        send_subtask(page, "pick up the white cup")
        _see(page, '#cl-timeline :text("ana")')
        page.click("#cl-end")
        _toast(page, "saved")
        record = load_episode(app.db, episode_id)
        assert record.summary.user == "ana" and record.segments[0].user == "ana"
        page.close()
    finally:
        app.close()
