"""The Episodes tab's replay player: its HTML (`player_html`), JavaScript (`REPLAY_JS`) and CSS.

The player plays a stored episode in the browser at its recorded pace times a chosen speed, from
the routes of `app/replay_api.py`: Play / Pause, a speed choice, a step slider, one image per
camera, the subtask of the moment beside them, and the episode's segments (a click jumps to the
first step of one). Frames are fetched one at a time per camera, so a slow link skips frames
rather than queueing them; a frame that is missing or does not decode is said in words (episode,
camera, step) and the other cameras and steps still play. `window.coachlabReplay.player` is the
open player's state, which the browser tests read.
"""

from __future__ import annotations

import html

SPEEDS = (0.25, 0.5, 1, 2, 4)


def player_html(episode_id: int | None, cameras: tuple[str, ...]) -> str:
    """The player of episode `episode_id` (nothing when no episode is open). The page's script
    (`REPLAY_JS`) wires every new `.ep-player` it sees."""
    if episode_id is None:
        return ""
    cams = "".join(f'<figure class="ep-cam"><img data-camera="{html.escape(c)}" id="ep-frame-{html.escape(c)}" '
                   f'alt="{html.escape(c)} camera"><figcaption>{html.escape(c)}</figcaption></figure>'
                   for c in cameras)
    speeds = "".join(f'<option value="{s}"{" selected" if s == 1 else ""}>{s:g}×</option>' for s in SPEEDS)
    return (f'<div class="ep-player" id="ep-player" data-episode="{int(episode_id)}" '
            f'data-cameras="{html.escape(",".join(cameras))}">'
            f'<div class="ep-view">{cams}<div class="ep-moment" id="ep-moment"></div></div>'
            f'<div class="ep-controls"><button type="button" class="ep-play" id="ep-play">Play</button>'
            f'<input type="range" class="ep-scrub" id="ep-scrub" min="0" max="0" value="0" step="1" '
            f'aria-label="step">'
            f'<span class="ep-where" id="ep-where"></span>'
            f'<label class="ep-speed-label">speed <select class="ep-speed" id="ep-speed">{speeds}</select></label></div>'
            f'<div class="ep-segs" id="ep-segs"></div><div class="ep-note" id="ep-note"></div></div>')


REPLAY_JS = r"""
() => {
  if (window.coachlabReplay) return;
  const rp = window.coachlabReplay = {player: null};
  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));

  function setup(root) {
    root.dataset.ready = '1';
    const id = root.dataset.episode, cams = root.dataset.cameras.split(',').filter(Boolean);
    const $ = (sel) => root.querySelector(sel);
    const play = $('.ep-play'), scrub = $('.ep-scrub'), speed = $('.ep-speed'), where = $('.ep-where');
    const moment = $('.ep-moment'), segs = $('.ep-segs'), note = $('.ep-note');
    const st = rp.player = {episode: +id, data: null, step: 0, playing: false, anchorT: 0, anchorWall: 0,
                            shown: {}, want: {}, busy: {}, urls: {}, problems: {}, run: 0};
    const alive = () => document.body.contains(root);

    function say() {  // what could not be shown, in words; the rest plays on
      const lines = Object.values(st.problems).slice(-4);
      note.innerHTML = lines.map(l => `<div>${esc(l)}</div>`).join('');
    }
    async function load(cam, step) {
      st.want[cam] = step;
      if (st.busy[cam]) return;  // one request per camera at a time: a slow link skips frames, never queues them
      st.busy[cam] = true;
      try {
        const r = await fetch(`/replay/${id}/frame/${encodeURIComponent(cam)}/${step}?k=${st.data.key}`);
        if (r.status === 404) throw new Error(`Episode ${id} has no stored frame of camera '${cam}' at step ${step}.`);
        if (!r.ok) throw new Error(`The frame of camera '${cam}' at step ${step} could not be read (HTTP ${r.status}).`);
        const url = URL.createObjectURL(await r.blob());
        const probe = new Image();
        probe.src = url;
        try { await probe.decode(); } catch (e) {
          URL.revokeObjectURL(url);
          throw new Error(`The stored frame of episode ${id}, camera '${cam}', step ${step} is damaged (not a readable image).`);
        }
        const img = root.querySelector(`img[data-camera="${CSS.escape(cam)}"]`);
        img.src = url;
        if (st.urls[cam]) URL.revokeObjectURL(st.urls[cam]);
        st.urls[cam] = url;
        st.shown[cam] = step;
        delete st.problems[cam];
      } catch (e) {
        st.problems[cam] = e.message;
        st.shown[cam] = step;
      } finally {
        st.busy[cam] = false;
        say();
        if (alive() && st.want[cam] !== step) load(cam, st.want[cam]);
      }
    }
    function momentHtml(i) {
      const d = st.data, k = d.segment[i], t = d.t[i];
      const head = `<div class="ep-time">${t.toFixed(1)} s</div>`;
      if (k < 0) return head + '<div class="ep-sub"><i>no subtask active</i></div>';
      const g = d.segments[k];
      const tags = [g.source, g.outcome, g.mistake ? 'mistake' : ''].filter(Boolean).join(' · ');
      return head + `<div class="ep-sub-label">subtask ${g.number}</div><div class="ep-sub">${esc(g.text)}</div>` +
             `<div class="ep-tags">${esc(tags)}</div>`;
    }
    function show(i) {
      const d = st.data;
      i = Math.max(0, Math.min(d.t.length - 1, i));
      st.step = i;
      scrub.value = i;
      where.textContent = `step ${i + 1} / ${d.t.length} · ${d.t[i].toFixed(1)} of ${d.t[d.t.length - 1].toFixed(1)} s`;
      moment.innerHTML = momentHtml(i);
      for (const b of segs.querySelectorAll('button')) b.classList.toggle('ep-seg-now', +b.dataset.index === d.segment[i]);
      for (const cam of cams) load(cam, i);
    }
    function anchor() { st.anchorT = st.data.t[st.step]; st.anchorWall = performance.now(); }
    function setPlaying(on) {
      st.playing = on;
      play.textContent = on ? 'Pause' : 'Play';
      play.classList.toggle('ep-playing', on);
      if (on) { if (st.step >= st.data.t.length - 1) show(0); anchor(); const run = ++st.run; setTimeout(() => tick(run), 0); }
    }
    function tick(run) {  // the step whose time is the episode's time now, at the chosen speed
      if (!st.playing || run !== st.run || !alive()) return;  // paused, or a newer Play runs its own
      const d = st.data, now = st.anchorT + (performance.now() - st.anchorWall) / 1000 * (+speed.value);
      let i = st.step;
      while (i + 1 < d.t.length && d.t[i + 1] <= now) i++;
      if (i !== st.step) show(i);
      if (i >= d.t.length - 1) setPlaying(false); else setTimeout(() => tick(run), 25);
    }
    play.addEventListener('click', () => { if (st.data && st.data.t.length) setPlaying(!st.playing); });
    speed.addEventListener('change', () => { if (st.playing) anchor(); });
    scrub.addEventListener('input', () => { if (!st.data) return; show(+scrub.value); if (st.playing) anchor(); });
    segs.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-step]');
      if (!b || !st.data) return;
      show(+b.dataset.step);
      if (st.playing) anchor();
    });

    fetch(`/replay/${id}/steps`).then(async r => {
      const d = await r.json();
      if (!r.ok) throw new Error(d.detail || `HTTP ${r.status}`);
      st.data = d;
      if (!d.t.length) { where.textContent = 'no steps were recorded'; play.disabled = true; return; }
      scrub.max = d.t.length - 1;
      const first = {};
      d.segment.forEach((k, i) => { if (k >= 0 && !(k in first)) first[k] = i; });
      segs.innerHTML = d.segments.map((g, k) => k in first ?
        `<button type="button" data-index="${k}" data-step="${first[k]}" title="jump to its first step">` +
        `${g.number}. ${esc(g.text)}</button>` : '').join('');
      show(0);
    }).catch(e => { note.textContent = `This episode cannot be replayed: ${e.message}`; play.disabled = true; });
  }

  function scan() { document.querySelectorAll('.ep-player:not([data-ready])').forEach(setup); }
  new MutationObserver(scan).observe(document.body, {childList: true, subtree: true});
  scan();
}
"""

REPLAY_CSS = """
.ep-view { display: flex; gap: 12px; align-items: flex-start; flex-wrap: wrap; }
.ep-cam { margin: 0; display: flex; flex-direction: column; align-items: center; }
.ep-cam img { width: clamp(220px, calc((100vw - 620px) / 2), 400px); aspect-ratio: 1 / 1; background: #111;
              border-radius: 6px; object-fit: contain; }
.ep-cam figcaption { font-size: 13px; opacity: 0.7; }
.ep-moment { flex: 1 1 220px; min-width: 200px; }
.ep-moment .ep-time { font-size: 1.1em; font-weight: 600; }
.ep-moment .ep-sub-label { font-size: 13px; opacity: 0.7; margin-top: 8px; text-transform: uppercase; }
.ep-moment .ep-sub { font-size: 1.3em; font-weight: 600; }
.ep-moment .ep-tags { font-size: 13px; opacity: 0.8; }
.ep-controls { display: flex; gap: 12px; align-items: center; margin-top: 8px; }
.ep-controls .ep-play { min-width: 84px; padding: 4px 12px; border-radius: 6px; border: 1px solid #8886;
                        font-weight: 600; cursor: pointer; background: #1a7f37; color: #fff; }
.ep-controls .ep-play.ep-playing { background: #9a6700; }
.ep-controls .ep-scrub { flex: 1 1 auto; }
.ep-controls .ep-where, .ep-controls .ep-speed-label { font-size: 13px; white-space: nowrap; }
.ep-segs { margin-top: 6px; }
.ep-segs button { font-size: 13px; margin: 2px 4px 2px 0; padding: 1px 8px; border-radius: 10px;
                  border: 1px solid #8884; background: #8881; cursor: pointer; }
.ep-segs button.ep-seg-now { background: #0969da; color: #fff; }
.ep-note { color: #cf222e; font-size: 13px; margin-top: 4px; }
"""
