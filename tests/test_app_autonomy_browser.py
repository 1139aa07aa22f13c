"""The Autonomous and Distill tabs in a real browser (Debian's chromium via Playwright) against the
real app, whose database holds scripted-coach episodes and a tiny policy distilled from them.
Screenshots go to test-artifacts/ so a person can look at them.
"""

from __future__ import annotations

import time

import pytest

from test_app_browser import _shot, _toast

LIVE = "#au-live"


@pytest.fixture(scope="module")
def app(tiny_policy):
    from app.server import AppConfig, CoachingApp

    url, _ = tiny_policy
    running = CoachingApp(AppConfig(port=0, db=url, sim_noise=0.0, subgoals="none", task_family="sort_blocks")).start()
    yield running
    running.close()


@pytest.fixture()
def page(browser, app):
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    page.goto(app.url)
    page.wait_for_selector("#cl-start")
    yield page
    page.close()


def _live_canvas(page, camera: str) -> str:
    return page.evaluate(f"document.querySelector('{LIVE} canvas[data-camera=\"{camera}\"]').toDataURL('image/png')")


def _shot_without_toasts(page, name: str) -> None:
    """A screenshot with the toasts hidden, so it shows what they cover (the live panel's right side)."""
    page.evaluate("document.querySelectorAll('.toast-wrap').forEach(t => t.style.visibility = 'hidden')")
    _shot(page, name)
    page.evaluate("document.querySelectorAll('.toast-wrap').forEach(t => t.style.visibility = '')")


def _fill(page, elem_id: str, text: str) -> None:
    box = page.locator(f"#{elem_id} input, #{elem_id} textarea").first
    box.fill(text)
    box.press("Enter")


def test_run_a_policy_take_over_and_coach(page, app, tiny_policy):
    from storage import load_episode

    page.get_by_role("tab", name="Autonomous").click()
    page.wait_for_selector("#au-run")
    _fill(page, "au-folder", "/nonexistent/policy")
    page.click("#au-run")
    _toast(page, "There is no checkpoint directory")
    _fill(page, "au-folder", "")
    page.locator("#au-policy input").first.wait_for()
    page.wait_for_function("document.querySelector('#au-policy input').value.includes('policy')")  # the registered one
    page.wait_for_function("document.querySelector('#au-task-family input').value === 'sort_blocks'")  # a task it learned

    page.click("#au-run")
    text = _toast(page, "the policy is driving", timeout_s=60)
    episode_id = int(text.split("Episode ")[1].split(" ")[0])
    before = {c: _live_canvas(page, c) for c in ("base", "wrist")}
    page.wait_for_selector("#au-live-info .cl-conf-text", timeout=30_000)  # a policy subtask and its confidence
    time.sleep(2.5)
    after = {c: _live_canvas(page, c) for c in ("base", "wrist")}
    assert all(before[c] != after[c] for c in before), "both live cameras must update as the policy drives"
    policy_subtask = page.inner_text("#au-live-info .cl-subtask")
    assert policy_subtask and "no episode" not in policy_subtask
    assert "the policy drives" in page.inner_text("#au-live-info .cl-who").lower()
    page.wait_for_selector("#au-counter :text('Policy thinks')")
    _shot_without_toasts(page, "07-autonomous-running")

    page.click("#au-take-over")
    _toast(page, f"You have episode {episode_id}")
    page.wait_for_selector("#au-live-info .cl-who:has-text('a person took over')")
    _fill(page, "au-subtask", "pick up the green block")
    page.wait_for_selector("#au-live-info .cl-subtask:has-text('pick up the green block')")
    _shot_without_toasts(page, "08-autonomous-taken-over")
    page.click("#au-end")
    _toast(page, f"Episode {episode_id} saved as success")

    record = load_episode(app.db, episode_id)
    assert record.summary.mode == "mixed" and record.summary.policy_checkpoint_id is not None
    sources = [(g.source, g.text) for g in record.segments]
    assert sources[0][0] == "policy" and sources[-1] == ("correction", "pick up the green block")
    assert "takeover" in {e.kind for e in record.events}


def test_distill_tab_trains_with_a_live_loss_plot_and_evaluates(page, app, tmp_path):
    from distill.dataset import DatasetConfig, select_episodes

    n = len(select_episodes(app.db, DatasetConfig()))  # the coached ones, and any run before that succeeded
    page.get_by_role("tab", name="Distill").click()
    page.wait_for_selector(f"#dl-count :text('{n} episodes selected')")
    page.locator("#dl-tasks label:has-text('drawer')").click()
    page.wait_for_selector("#dl-count :text('0 episodes selected')")
    page.click("#dl-train")
    _toast(page, "No logged episodes")
    page.locator("#dl-tasks label:has-text('drawer')").click()
    page.wait_for_selector(f"#dl-count :text('{n} episodes selected')")

    page.locator("#dl-epochs input").first.fill("2")
    page.locator("#dl-out input, #dl-out textarea").first.fill(str(tmp_path / "hl"))
    page.click("#dl-train")
    _toast(page, "Training into")
    page.wait_for_selector("#dl-plot img", timeout=120_000)  # drawn after the first epoch
    page.wait_for_selector("#dl-progress :text('Trained')", timeout=120_000)
    assert (tmp_path / "hl" / "model.safetensors").is_file()
    page.wait_for_function("document.querySelector('#dl-eval-policy textarea, #dl-eval-policy input').value.endsWith('hl')")
    _shot_without_toasts(page, "09-distill-trained")

    # Evaluate in a child process on its own sim robot: one unseen seed, a short time limit.
    page.locator("#dl-eval-episodes input").first.fill("1")
    page.locator("#dl-eval-limit input").first.fill("10")
    page.click("#dl-evaluate")
    _toast(page, "Evaluating on sort_blocks")
    page.wait_for_selector("#dl-results [data-testid='cell-0-0']:has-text('sort_blocks') >> visible=true",
                           timeout=120_000)
    page.wait_for_selector("#dl-results-plot >> visible=true")
    assert page.inner_text("#dl-results [data-testid='cell-0-4'] >> visible=true").strip() == "1"  # episodes
    _shot_without_toasts(page, "10-distill-evaluated")


def test_run_says_it_is_starting_and_keeps_its_time_limit(page, app, tiny_policy):
    """Issue 21 fault 12: Run gave no word for ~15 s, and a run had no time limit the page could set."""
    from storage import load_episode

    page.get_by_role("tab", name="Autonomous").click()
    page.locator("#au-folder input, #au-folder textarea").first.fill(tiny_policy[1])
    # the folder picks the task family its policy learned (sort_blocks), whatever the tab showed before
    page.wait_for_function("document.querySelector('#au-task-family input').value === 'sort_blocks'",
                           timeout=15_000)
    limit = page.locator("#au-limit input").first
    limit.fill("8")
    limit.press("Tab")
    page.click("#au-run")
    page.wait_for_selector("#au-counter :text('Starting')", timeout=1_500)  # at once, before the robot has reset
    text = _toast(page, "the policy is driving", timeout_s=60)
    episode_id = int(text.split("Episode ")[1].split(" ")[0])
    page.wait_for_selector(f"#au-counter :text('Last: episode {episode_id}')", timeout=30_000)
    record = load_episode(app.db, episode_id)
    assert record.summary.status in ("success", "failure")
    assert record.summary.duration_s <= 8 + 3, f"the run went on for {record.summary.duration_s} s, limit 8 s"
