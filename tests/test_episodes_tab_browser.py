"""The Episodes tab as a coach or researcher uses it (issue 21), in a real browser against the real app
on the embedded sim: the list keeps itself up to date (a new or ended episode shows without a
click) with task family, seed, duration and outcome; a stored episode replays with Play / Pause
and a speed; an episode is discarded (kept, with a `discard` event, and left out of the
distillation selection) and restored. Episodes are recorded through the app's own session, as the
Coach tab records them. Screenshots at 1600x1000 go to test-artifacts/.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from app.episodes_tab import EPISODE_COLUMNS, REFRESH_S
from coaching.session import EpisodeSettings

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PLAYER = "window.coachlabReplay.player"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from app.server import AppConfig, CoachingApp

    running = CoachingApp(AppConfig(port=0, db=str(tmp_path_factory.mktemp("episodes_tab") / "app.db"),
                                    sim_noise=0.0, subgoals="none")).start()
    yield running
    running.close()


@pytest.fixture()
def page(browser, app):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(app.url)
    page.wait_for_selector("#cl-start")
    page.get_by_role("tab", name="Episodes").click()
    page.wait_for_selector("#ep-table")
    yield page
    if app.session.episode_id is not None:
        app.session.end_episode("aborted", "test")
    page.close()


def _record(app, seed: int, seconds: float = 6.0, outcome: str = "success") -> int:
    """An episode coached through the app's session: one subtask, `seconds` long."""
    session = app.session
    episode_id = session.start_episode(EpisodeSettings(task="Bus the table.", task_family="bussing", seed=seed),
                                       user="ana")
    session.send_subtask("pick up the white cup", user="ana")
    time.sleep(seconds)
    session.end_episode(outcome, user="ana")
    return episode_id


_ROWS_JS = """() => {  // the table's visible cells (it keeps hidden copies too), as rows of texts
  const rows = {};
  for (const cell of document.querySelectorAll('#ep-table [data-testid^="cell-"]')) {
    if (cell.offsetParent === null) continue;
    const [, r, c] = cell.dataset.testid.split('-').map(Number);
    (rows[r] = rows[r] || [])[c] = cell.innerText.trim();
  }
  return Object.keys(rows).map(Number).sort((a, b) => a - b).map(r => [r, rows[r]]);
}"""


def _find(page, episode_id: int) -> tuple[int, dict[str, str]] | None:
    for r, texts in page.evaluate(_ROWS_JS):
        if texts and texts[0] == str(episode_id):
            return r, dict(zip(EPISODE_COLUMNS, texts))
    return None


def _row(page, episode_id: int, timeout_s: float = 3 * REFRESH_S + 5) -> dict[str, str]:
    """The row of `episode_id` as {column: text}, once the table shows it (nobody clicks Refresh)."""
    end = time.monotonic() + timeout_s
    while (found := _find(page, episode_id)) is None:
        assert time.monotonic() < end, f"episode {episode_id} is not listed after {timeout_s:.0f} s"
        time.sleep(0.3)
    return found[1]


def _wait_row(page, episode_id: int, column: str, text: str, timeout_s: float = 3 * REFRESH_S + 5) -> dict[str, str]:
    end = time.monotonic() + timeout_s
    while (row := _row(page, episode_id, timeout_s)).get(column) != text:
        assert time.monotonic() < end, f"episode {episode_id}'s {column} is {row.get(column)!r}, not {text!r}"
        time.sleep(0.3)
    return row


def _open(page, episode_id: int) -> None:
    r, _ = _find(page, episode_id)
    page.locator(f'#ep-table [data-testid="cell-{r}-1"] >> visible=true').first.click()
    page.wait_for_selector(f'#ep-player[data-episode="{episode_id}"]', timeout=30_000)
    page.wait_for_function(f"{PLAYER} && {PLAYER}.episode === {episode_id} && {PLAYER}.data", timeout=30_000)


def _shot(page, name: str, selector: str | None = None) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    if selector:
        page.locator(selector).scroll_into_view_if_needed()
    else:
        page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))  # the viewport, 1600x1000, as a person sees it


def test_the_list_keeps_itself_up_to_date(page, app):
    """New and ended episodes show without a click, with task family, seed, duration and outcome."""
    session = app.session
    running = session.start_episode(EpisodeSettings(
        task="Bus the table: put the dishes in the bussing tub and the trash in the trash bin.", task_family="bussing",
        seed=11), user="ana")
    row = _row(page, running)
    assert (row["task family"], row["seed"], row["duration"], row["outcome"]) == ("bussing", "11", "running", "running")
    session.send_subtask("pick up the white cup", user="ana")
    time.sleep(2.0)
    session.end_episode("failure", user="ana")
    row = _wait_row(page, running, "outcome", "failure")
    assert re.fullmatch(r"\d+\.\d s", row["duration"]), row
    assert float(row["duration"].split()[0]) >= 2.0
    _shot(page, "40-episodes-list")
    page.set_viewport_size({"width": 1280, "height": 800})  # a new user's trial: the right columns ran off it
    time.sleep(0.5)
    right = page.evaluate("Math.max(...[...document.querySelectorAll('#ep-table th')].filter(e => e.offsetParent)"
                          ".map(e => e.getBoundingClientRect().right))")
    assert right <= 1280, f"the table's last column ends at {right} px"
    _shot(page, "40-episodes-list-1280")


def test_a_stored_episode_replays_with_play_pause_and_speed(page, app):
    episode_id = _record(app, seed=0, seconds=7.0)  # seed 0 has a white cup
    _open(page, episode_id)
    page.wait_for_function(f"{PLAYER}.shown.base === 0 && {PLAYER}.shown.wrist === 0")
    assert page.evaluate("document.querySelector('#ep-frame-base').naturalWidth") > 0  # the stored frame shows
    assert "pick up the white cup" in page.inner_text("#ep-segs")
    steps = page.evaluate(f"{PLAYER}.data.t.length")

    page.click("#ep-play")
    page.wait_for_selector("#ep-play:text-is('Pause')")
    page.wait_for_function(f"{PLAYER}.step > 10", timeout=10_000)  # plays at the recorded 20 Hz
    page.click("#ep-play")
    assert page.inner_text("#ep-play") == "Play" and not page.evaluate(f"{PLAYER}.playing")
    paused_at = page.evaluate(f"{PLAYER}.step")
    time.sleep(0.8)
    assert page.evaluate(f"{PLAYER}.step") == paused_at  # paused: stays put
    page.wait_for_function(f"{PLAYER}.shown.base === {PLAYER}.step", timeout=10_000)  # the frame of that step
    assert "pick up the white cup" in page.inner_text("#ep-moment")

    for speed in ("1", "4"):
        page.select_option("#ep-speed", speed)
        # Episode seconds played per wall second, timed in the page between the first and the last step
        # change it sees, so a start-up delay (a loaded machine) does not count as slowness.
        rate = page.evaluate("""async () => {
          const p = window.coachlabReplay.player, play = document.querySelector('#ep-play');
          const scrub = document.querySelector('#ep-scrub');
          scrub.value = 0; scrub.dispatchEvent(new Event('input'));
          const seen = [];
          play.click();
          const end = performance.now() + 1200;
          while (performance.now() < end) {
            if (!seen.length || seen[seen.length - 1][1] !== p.step) seen.push([performance.now(), p.step]);
            await new Promise(ok => setTimeout(ok, 5));
          }
          play.click();
          const [w0, s0] = seen[1], [w1, s1] = seen[seen.length - 1];
          return (p.data.t[s1] - p.data.t[s0]) / ((w1 - w0) / 1000);
        }""")
        assert 0.8 * float(speed) <= rate <= 1.25 * float(speed), f"played {rate:.2f} s a second at {speed}x"

    page.click("#ep-play")  # plays on to the end and stops there
    page.wait_for_function(f"!{PLAYER}.playing && {PLAYER}.step === {steps - 1}", timeout=30_000)
    page.fill("#ep-scrub", str(steps // 3))  # the slider is a scrubber too
    page.dispatch_event("#ep-scrub", "input")
    assert page.evaluate(f"{PLAYER}.step") == steps // 3
    page.select_option("#ep-speed", "1")
    page.click("#ep-play")
    time.sleep(0.6)
    _shot(page, "41-episodes-replay-playing", "#ep-player")
    page.click("#ep-play")


def test_a_discarded_episode_is_kept_but_left_out_of_distillation(page, app):
    from distill.dataset import DatasetConfig, select_episodes
    from storage import list_episodes, load_episode

    kept, dropped = _record(app, seed=0, seconds=3.0), _record(app, seed=0, seconds=3.0)
    assert {kept, dropped} <= set(select_episodes(app.db, DatasetConfig()))
    _row(page, dropped)
    _open(page, dropped)
    page.fill("#ep-discard-reason textarea, #ep-discard-reason input", "the cup slipped out of view")
    page.click("#ep-discard")
    page.wait_for_selector('[data-testid="toast-text"]:has-text("discarded")')
    page.wait_for_selector("#ep-title :text('discarded')")
    page.wait_for_selector("#ep-restore >> visible=true")
    _shot(page, "42-episodes-discarded", "#ep-restore")
    end = time.monotonic() + 3 * REFRESH_S + 5
    while _find(page, dropped) is not None:  # gone from the list
        assert time.monotonic() < end, "the discarded episode is still listed"
        time.sleep(0.3)

    # kept, with who and why, but no selection takes it
    record = load_episode(app.db, dropped)
    assert record.summary.discarded and record.summary.num_steps > 20 and record.frame_count("base") > 20
    event = next(e for e in record.events if e.kind == "discard")
    assert event.data == {"reason": "the cup slipped out of view"} and event.user
    assert dropped not in {e.id for e in list_episodes(app.db)}
    chosen = select_episodes(app.db, DatasetConfig())
    assert kept in chosen and dropped not in chosen
    assert dropped not in select_episodes(app.db, DatasetConfig(episode_ids=[kept, dropped]))

    page.get_by_role("tab", name="Distill").click()  # the Distill tab counts without it
    page.wait_for_function("(n) => document.querySelector('#dl-count').innerText.trim().startsWith(n + ' episode')",
                           arg=len(chosen), timeout=15_000)
    page.get_by_role("tab", name="Episodes").click()

    page.check("#ep-show-discarded input")
    row = _row(page, dropped)
    assert row["outcome"] == "success (discarded)"
    page.click("#ep-restore")
    page.wait_for_selector('[data-testid="toast-text"]:has-text("restored")')
    _wait_row(page, dropped, "outcome", "success")
    assert dropped in select_episodes(app.db, DatasetConfig())
    assert [e.kind for e in load_episode(app.db, dropped).events][-2:] == ["discard", "restore"]
