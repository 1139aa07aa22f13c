"""Benchmark: the coaching app as a browser sees it (headless Chromium driven by Playwright).

The app runs in its own process on the embedded default. While an episode runs, the page's own
counters give each camera's frames per second and each frame's age (render in the sim to draw on
the canvas; browser and app share this machine's clock). Enter-to-action is the time from the
Enter key in the subtask box to the first action of the new chunk reaching the sim, as the
session stamps it. Idle detection is the time from the arm's last motion for a subtask (the loop
stamps it, `coaching/activity.py`) to the page first showing that subtask idle (the page stamps it),
for subtasks carried out to the end. Then four more tabs open and the control loop's rate is read
again.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterable

from tqdm import tqdm

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SUBTASKS = ["pick up the white cup", "pick up the black can", "pick up the yellow cup", "pick up the white bottle",
            "pick up the orange cup", "pick up the purple cup"]
# Carried out to the end one after another (seed 0's bussing scene), each until the page shows it idle.
IDLE_SUBTASKS = ["put it in the bussing tub", "pick up the white cup", "put it in the bussing tub",
                 "pick up the yellow cup", "put it in the bussing tub"]


def _start_app(db: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "app", "--port", "0", "--db", db],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if "coachlab is up at" not in line:
        proc.kill()
        raise RuntimeError(f"The app did not start: {line!r}")
    return proc, line.split("coachlab is up at ")[1].split()[0]


def _status(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "live/status") as r:
        return json.load(r)


def _camera_counters(page) -> dict[str, dict[str, Any]]:
    return page.evaluate("Object.fromEntries(Object.entries(window.coachlab.cams).map("
                         "([k, v]) => [k, {frames: v.frames, ages: v.ages.slice()}]))")


def launch_chromium(playwright):
    """Debian's chromium, headless, as the UI bench and the browser tests drive it."""
    return playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)


def send_subtask(page, text: str) -> None:
    """Type a subtask into the Coach tab and press Enter."""
    box = page.locator("#cl-subtask input, #cl-subtask textarea").first
    box.fill(text)
    box.press("Enter")


def idle_detect_ms(page, texts: Iterable[str], timeout_s: float = 40.0) -> list[float]:
    """For each subtask in `texts`, sent in turn: ms from the arm's last motion for it to the page
    first showing it idle. A subtask that is refused, fails or never goes idle within `timeout_s`
    gives no figure."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    found = []
    for text in texts:
        before = page.evaluate("window.coachlab.status.subtask_id")
        send_subtask(page, text)
        try:
            page.wait_for_function("(b) => window.coachlab.status.subtask_id != null && window.coachlab.status.subtask_id !== b",
                                   arg=before, timeout=10_000)
            seg = page.evaluate("window.coachlab.status.subtask_id")
            page.wait_for_function("(seg) => (window.coachlab.idle && window.coachlab.idle.segment === seg) || "
                                   "['refused', 'failed'].includes(window.coachlab.status.subtask_status)",
                                   arg=seg, timeout=timeout_s * 1000)
        except PlaywrightTimeout:
            continue
        idle = page.evaluate("window.coachlab.idle")
        if idle and idle["segment"] == seg and idle["movedLast"]:
            found.append(idle["shownAt"] - idle["movedLast"] * 1000)
    return found


def run(watch_s: float = 10.0, trials: int = 6) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    db = str(Path(tempfile.mkdtemp()) / "bench_ui.db")
    proc, url = _start_app(db)
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(url)
            page.wait_for_selector("#cl-start")
            page.click("#cl-start")
            page.wait_for_function("window.coachlab.status && window.coachlab.status.episode_id")
            send_subtask(page, SUBTASKS[0])

            before, t0 = _camera_counters(page), time.monotonic()
            one_tab = []
            for _ in tqdm(range(int(watch_s)), desc="watching cameras", unit="s"):
                time.sleep(1.0)
                one_tab.append(_status(url))
            after, t1 = _camera_counters(page), time.monotonic()
            fps = {c: round((after[c]["frames"] - before[c]["frames"]) / (t1 - t0), 1) for c in after}
            ages = [a for c in after for a in after[c]["ages"][-int(15 * watch_s):]]

            latencies = []
            for text in tqdm(SUBTASKS[1:1 + trials], desc="enter to action", unit="trial"):
                n = len(_status(url)["segments"])
                send_subtask(page, text)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    segs = _status(url)["segments"]
                    if len(segs) > n and segs[-1]["first_action_wall"]:
                        break
                    time.sleep(0.02)
                enter_at = page.evaluate("window.coachlab.enterAt")
                latencies.append(segs[-1]["first_action_wall"] * 1000 - enter_at)
                time.sleep(1.0)

            idle = idle_detect_ms(page, tqdm(IDLE_SUBTASKS, desc="idle detection", unit="subtask"))

            tabs = [browser.new_page(viewport={"width": 1400, "height": 1200}) for _ in range(4)]
            for tab in tabs:
                tab.goto(url)
                tab.wait_for_function("window.coachlab && window.coachlab.cams.base && window.coachlab.cams.base.frames > 3")
            send_subtask(page, SUBTASKS[0])
            five_tabs = []
            for _ in tqdm(range(int(watch_s)), desc="loop with 5 tabs", unit="s"):
                time.sleep(1.0)
                five_tabs.append(_status(url))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {
        "fps_per_camera": fps,
        "median_frame_age_ms": round(statistics.median(ages), 1),
        "loop_hz_with_1_tab": _median(one_tab, "loop_hz"),
        "loop_hz_with_5_tabs": _median(five_tabs, "loop_hz"),
        "tick_ms_p95_with_1_tab": _median(one_tab, "tick_ms_p95"),
        "tick_ms_p95_with_5_tabs": _median(five_tabs, "tick_ms_p95"),
        "target_loop_hz": _TARGET_HZ,
        "enter_to_action_ms": round(statistics.median(latencies), 1),
        "enter_to_action_trials_ms": [round(x, 1) for x in latencies],
        "idle_detect_ms": round(statistics.median(idle), 1) if idle else None,
        "idle_detect_trials_ms": [round(x, 1) for x in idle],
    }


_TARGET_HZ = 20.0


def _median(statuses: list[dict[str, Any]], key: str) -> float | None:
    values = [s[key] for s in statuses if s.get(key) is not None]
    return round(statistics.median(values), 1) if values else None


def main() -> None:
    print(json.dumps(run()))


if __name__ == "__main__":
    main()
