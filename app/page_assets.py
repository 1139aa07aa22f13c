"""The page's own JavaScript and CSS: live camera canvases, the status strip, keyboard shortcuts.

All `<canvas data-camera=NAME>` are fed by one stream, `/live/stream` (see `app/live_api.py`); `/live/status` is polled twice a second for the active subtask, the
elapsed time and the status lights; the Autonomous tab's copy of the panel (`data-view="autonomous"`)
shows who drives (the policy, or a person after Take over) and the policy's confidence instead. `window.coachlab` keeps per-camera counters (frames drawn,
frame ages) and when it first showed a subtask idle (`idle`), which the UI benchmark reads. Keyboard: Escape presses Stop, F8 toggles Pause / Resume,
F9 Try again, F10 End episode (`KEYS_HTML` lists them on the page); none fires from another form control.
`/live/objects` is polled too: the names the detector sees in view (a click types one into the
subtask box) and, with "show boxes", their boxes on a transparent canvas over each camera.
"""

from __future__ import annotations

PAGE_JS = r"""
() => {
  if (window.coachlab) return;
  const cl = window.coachlab = {cams: {}, status: null, enterAt: null};
  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));

  async function feed(canvases) {
    // One streamed response for all cameras: records of MAGIC, u32 header length, JSON header, u32 JPEG length, JPEG.
    const byCam = {};
    for (const c of canvases) {
      byCam[c.dataset.camera] = {canvas: c, ctx: c.getContext('2d')};
      cl.cams[c.dataset.camera] = cl.cams[c.dataset.camera] || {frames: 0, ages: [], seq: 0, errors: 0};
    }
    const dec = new TextDecoder();
    const alive = () => canvases.some(c => document.body.contains(c));
    while (alive()) {
      try {
        const r = await fetch(`/live/stream?cameras=${Object.keys(byCam).join(',')}`, {cache: 'no-store'});
        if (!r.ok) throw new Error('HTTP ' + r.status);
        const reader = r.body.getReader();
        let buf = new Uint8Array(0);
        while (true) {
          const {value, done} = await reader.read();
          if (done) break;
          const joined = new Uint8Array(buf.length + value.length);
          joined.set(buf); joined.set(value, buf.length); buf = joined;
          const latest = {};
          while (buf.length >= 8) {
            const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
            const hlen = view.getUint32(4);
            if (buf.length < 12 + hlen) break;
            const jlen = view.getUint32(8 + hlen);
            if (buf.length < 12 + hlen + jlen) break;
            const header = JSON.parse(dec.decode(buf.subarray(8, 8 + hlen)));
            latest[header.camera] = {header, jpeg: buf.slice(12 + hlen, 12 + hlen + jlen)};
            buf = buf.slice(12 + hlen + jlen);
          }
          for (const [cam, rec] of Object.entries(latest)) {  // only the newest per camera is worth drawing
            const target = byCam[cam], st = cl.cams[cam];
            if (!target) continue;
            const bmp = await createImageBitmap(new Blob([rec.jpeg], {type: 'image/jpeg'}));
            target.ctx.drawImage(bmp, 0, 0, target.canvas.width, target.canvas.height);
            bmp.close();
            st.seq = rec.header.seq;
            st.frames++;
            st.ages.push(Date.now() - rec.header.time_ms);
            if (st.ages.length > 600) st.ages.splice(0, st.ages.length - 600);
          }
        }
      } catch (e) { Object.values(cl.cams).forEach(st => st.errors++); }
      await new Promise(ok => setTimeout(ok, 1000));
    }
  }

  function light(name, ok, text) {  // ok: true (green), false (red) or 'warn' (amber)
    const cls = ok === 'warn' ? 'warn' : ok ? 'ok' : 'bad';
    return `<span class="cl-light ${cls}" title="${esc(text)}">● ${esc(name)}: ${esc(text)}</span>`;
  }

  // The active subtask with a word for what it is doing (`coaching/activity.py`), and the VLA's reason.
  const STATUS_WORDS = {running: 'running', idle: 'idle: likely done', refused: 'refused', failed: 'failed',
                        paused: 'paused', stopped: 'stopped', waiting: 'waiting'};
  function subtaskHtml(s) {
    if (!s.episode_id) return '<div class="cl-subtask cl-st-none"><i>no episode running</i></div>';
    const st = s.subtask_status || 'waiting';
    const text = s.subtask || (st === 'stopped' ? s.last_subtask : null);
    const badge = `<span class="cl-badge cl-badge-${st}">${STATUS_WORDS[st] || esc(st)}</span>`;
    const line = text ? `<div class="cl-subtask cl-st-${st}">${esc(text)}</div>`
                      : '<div class="cl-subtask cl-st-waiting"><i>waiting for a subtask</i></div>';
    let note = '';
    // Idle is the good case (it stopped after working): say what to do next, not the VLA's remark.
    const taskDone = s.task_progress != null && s.task_progress >= 0.999;
    if (taskDone && (st === 'idle' || st === 'waiting')) note = '<div class="cl-note cl-note-done">The robot reports the task done: end the episode (F10).</div>';
    else if (st === 'idle') note = `<div class="cl-note cl-note-quiet" title="${esc(s.subtask_reason || '')}">The arm stopped: send the next subtask, or Try again (F9) if it is not done.</div>`;
    else if (s.subtask_reason && st === 'refused') note = `<div class="cl-note">The VLA refused: ${esc(s.subtask_reason)}</div>`;
    else if (s.subtask_reason) note = `<div class="cl-note">The VLA failed: ${esc(s.subtask_reason)}</div>`;
    const pct = s.task_progress == null ? null : Math.round(100 * s.task_progress);
    const progress = pct == null ? '' : `<div class="cl-progress-label">task progress (as the robot reports it): ${pct}%</div>` +
      `<div class="cl-progress"><div class="cl-progress-bar" style="width:${pct}%"></div></div>`;
    return badge + line + note + progress;
  }

  async function poll() {
    while (true) {
      try {
        const r = await fetch('/live/status', {cache: 'no-store'});
        if (r.ok) {
          const s = cl.status = await r.json();
          const info = subtaskHtml(s);
          const elapsed = `<div class="cl-elapsed">${s.episode_id ? 'episode ' + s.episode_id + ' · ' + s.elapsed_s.toFixed(1) + ' s' : ''}</div>`;
          const banner = s.paused ? '<div class="cl-paused-banner">PAUSED: the robot holds. Resume (F8) or send a subtask to go on.</div>' : '';
          for (const panel of document.querySelectorAll('.cl-live-info')) {
            if (panel.dataset.view === 'autonomous') {
              const who = !s.episode_id ? '' : s.mode === 'autonomous' ? 'the policy drives' : s.mode === 'mixed' ? 'a person took over' : 'coached episode';
              const pct = s.confidence == null ? null : Math.round(100 * s.confidence);
              const conf = pct == null ? '' : `<div class="cl-conf"><div class="cl-conf-bar" style="width:${pct}%"></div></div>` +
                `<div class="cl-conf-text">${pct}% confident</div>`;
              panel.innerHTML = banner + `<div class="cl-who">${who}</div>` + info + conf + elapsed;
            } else {
              panel.innerHTML = banner + info + elapsed;
            }
          }
          // When the page first showed the active subtask idle, and when the arm had last moved for it:
          // `coachlab bench ui` reads the difference as idle_detect_ms.
          if (s.subtask_status === 'idle' && s.subtask_id != null && (!cl.idle || cl.idle.segment !== s.subtask_id))
            cl.idle = {segment: s.subtask_id, shownAt: Date.now(), movedLast: s.moved_last_wall};
          const h = s.health, rtt = s.vla_rtt_ms == null ? 'idle' : s.vla_rtt_ms.toFixed(1) + ' ms';
          for (const lights of document.querySelectorAll('.cl-lights')) {
            lights.innerHTML = light('robot', h.robot_ok, `${s.loop_hz} / ${s.target_hz} Hz`) +
              light('VLA', s.vla_error ? false : s.subtask_status === 'refused' ? 'warn' : true,
                    s.vla_error || (s.subtask_status === 'refused' ? 'refused the subtask' :
                                    s.vla_process_note ? rtt + ' · ' + s.vla_process_note : rtt)) +
              light('database', h.database_ok && !s.errors.length, s.errors.length ? s.errors[s.errors.length - 1] : h.database);
          }
        }
      } catch (e) {}
      await new Promise(ok => setTimeout(ok, 500));
    }
  }

  // What the detector sees (`/live/objects`): the names a coach can type, and optionally their boxes.
  const BOXES_KEY = 'coachlab.showBoxes';
  function drawBoxes(objects) {
    const show = localStorage.getItem(BOXES_KEY) === '1';
    for (const overlay of document.querySelectorAll('canvas[data-overlay]')) {
      const ctx = overlay.getContext('2d');
      ctx.clearRect(0, 0, overlay.width, overlay.height);
      if (!show) continue;
      ctx.lineWidth = 1.5; ctx.font = '9px sans-serif';
      for (const o of objects.filter(o => o.camera === overlay.dataset.overlay)) {
        const [x0, y0, x1, y1] = o.box;
        ctx.strokeStyle = '#ffe600'; ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
        const w = ctx.measureText(o.label).width + 4;
        ctx.fillStyle = 'rgba(0,0,0,0.65)'; ctx.fillRect(x0, Math.max(0, y0 - 11), w, 11);
        ctx.fillStyle = '#ffe600'; ctx.fillText(o.label, x0 + 2, Math.max(9, y0 - 2));
      }
    }
  }
  function typeName(label) {  // a click on a name puts it in the subtask box, where the coach was typing
    const box = document.querySelector('#cl-subtask textarea, #cl-subtask input');
    if (!box) return;
    const sep = box.value && !box.value.endsWith(' ') ? ' ' : '';
    box.value = box.value + sep + label;
    box.dispatchEvent(new Event('input', {bubbles: true}));
    box.focus();
  }
  async function pollObjects() {
    while (true) {
      try {
        const r = await fetch('/live/objects', {cache: 'no-store'});
        if (r.ok) {
          const p = cl.objects = await r.json();
          const key = JSON.stringify([p.labels, p.error]);
          for (const list of document.querySelectorAll('.cl-object-list')) {
            if (list.dataset.key === key) continue;  // rewriting unchanged chips would eat clicks
            list.dataset.key = key;
            const chips = p.labels.map(l => list.dataset.view === 'coach'
              ? `<button type="button" class="cl-chip" data-label="${esc(l)}" title="type it">${esc(l)}</button>`
              : `<span class="cl-chip">${esc(l)}</span>`).join('');
            list.innerHTML = p.error ? `<span class="cl-note">${esc(p.error)}</span>`
              : (chips || '<i>nothing recognised in view</i>');
          }
          drawBoxes(p.objects);
        }
      } catch (e) {}
      await new Promise(ok => setTimeout(ok, 400));
    }
  }
  document.addEventListener('click', (e) => {
    const chip = e.target.closest && e.target.closest('button.cl-chip');
    if (chip) typeName(chip.dataset.label);
  });
  document.addEventListener('change', (e) => {
    if (!e.target.classList || !e.target.classList.contains('cl-boxes-toggle')) return;
    localStorage.setItem(BOXES_KEY, e.target.checked ? '1' : '0');
    document.querySelectorAll('.cl-boxes-toggle').forEach(t => { t.checked = e.target.checked; });
    drawBoxes(cl.objects ? cl.objects.objects : []);
  });

  function start() {
    const fresh = [...document.querySelectorAll('canvas[data-camera]')].filter(c => !c.dataset.fed);
    fresh.forEach(c => { c.dataset.fed = '1'; });
    document.querySelectorAll('.cl-boxes-toggle').forEach(t => { t.checked = localStorage.getItem(BOXES_KEY) === '1'; });
    if (fresh.length) feed(fresh);
  }
  new MutationObserver(start).observe(document.body, {childList: true, subtree: true});
  start();
  poll();
  pollObjects();

  // Shortcuts (listed on the page, `KEYS_HTML`). None fires from another form control (a dropdown's
  // Esc closes the dropdown, it must not stop the robot), only from the page or the subtask box, and
  // only on the tab whose buttons are shown.
  const KEYS = {Escape: ['cl-stop', 'au-stop'], F9: ['cl-again'], F10: ['cl-end']};  // the first one shown
  function visible(ids) {
    for (const id of ids) { const b = document.getElementById(id); if (b && b.offsetParent !== null) return b; }
    return null;
  }
  function inOtherControl(t) {
    if (!t || !t.closest || t.closest('#cl-subtask')) return false;
    return !!t.closest('input, textarea, select, [contenteditable=""], [contenteditable="true"], [role="listbox"], [role="combobox"], .wrap-inner, ul.options');
  }
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && e.target.closest && e.target.closest('#cl-subtask')) { cl.enterAt = Date.now(); }
    if (!(e.key in KEYS) && e.key !== 'F8') return;
    if (inOtherControl(e.target)) return;
    const ids = e.key === 'F8' ? [cl.status && cl.status.paused ? 'cl-resume' : 'cl-pause'] : KEYS[e.key];
    const button = visible(ids);
    if (!button) return;
    e.preventDefault();
    button.click();
  }, true);
}
"""

PAGE_CSS = """
.cl-cams { display: flex; gap: 12px; flex-wrap: wrap; }
.cl-cams > .cl-side { flex: 1 1 320px; min-width: 280px; }  /* beside the cameras, not under them */
.cl-cam { display: flex; flex-direction: column; align-items: center; }
/* The cameras as large as the screen allows with the status column beside them (1280 to 1600+ wide). */
.cl-cam-stack { position: relative; width: clamp(260px, calc((100vw - 580px) / 2), 540px); aspect-ratio: 1 / 1; }
.cl-cam canvas { width: 100%; height: 100%; background: #111; border-radius: 6px; image-rendering: auto; }
.cl-cam canvas.cl-overlay { position: absolute; left: 0; top: 0; background: transparent; pointer-events: none; }
.cl-objects { margin-top: 10px; }
.cl-objects .cl-in-view { font-size: 13px; opacity: 0.7; margin-right: 6px; }
.cl-chip { display: inline-block; margin: 2px 4px 2px 0; padding: 1px 8px; border-radius: 10px; border: 1px solid #8884;
           background: #8881; font-size: 13px; cursor: default; }
button.cl-chip { cursor: pointer; }
button.cl-chip:hover { background: #2f81f733; }
.cl-cam-name { font-size: 13px; opacity: 0.7; }
.cl-live-info .cl-subtask { font-size: 1.4em; font-weight: 600; }
.cl-live-info { max-width: 420px; }
.cl-live-info .cl-elapsed { font-size: 1.0em; opacity: 0.75; }
.cl-live-info .cl-note { color: #cf222e; margin-top: 8px; }
.cl-live-info .cl-who { font-size: 13px; text-transform: uppercase; letter-spacing: 0.05em; opacity: 0.7; }
.cl-live-info .cl-conf { width: 240px; height: 10px; background: #ddd; border-radius: 5px; margin-top: 8px; overflow: hidden; }
.cl-live-info .cl-conf-bar { height: 100%; background: #2f81f7; }
.cl-live-info .cl-conf-text { font-size: 13px; opacity: 0.8; margin-bottom: 6px; }
.cl-light { margin-right: 14px; font-size: 13px; }
.cl-light.ok { color: #1a7f37; }
.cl-light.bad { color: #cf222e; }
.cl-light.warn { color: #9a6700; }
.cl-badge { display: inline-block; font-size: 13px; font-weight: 600; text-transform: uppercase; letter-spacing: 0.04em;
            padding: 1px 8px; border-radius: 4px; color: #fff; background: #57606a; }
.cl-badge-running { background: #1a7f37; }
.cl-badge-idle { background: #0969da; }
.cl-badge-refused, .cl-badge-failed { background: #cf222e; }
.cl-badge-paused { background: #9a6700; }
.cl-live-info .cl-st-refused, .cl-live-info .cl-st-failed, .cl-live-info .cl-st-stopped { font-weight: 400;
            text-decoration: line-through; opacity: 0.7; }
.cl-live-info .cl-note.cl-note-quiet { color: inherit; opacity: 0.75; }
.cl-live-info .cl-note.cl-note-done { color: #1a7f37; font-weight: 600; }
.cl-paused-banner { background: #fff8c5; color: #4d2d00; border: 1px solid #d4a72c; border-radius: 6px; padding: 6px 10px;
            font-weight: 600; margin-bottom: 8px; }
.cl-progress { width: 240px; height: 8px; background: #ddd; border-radius: 4px; margin-top: 6px; overflow: hidden; }
.cl-progress-bar { height: 100%; background: #1a7f37; }
.cl-keys { font-size: 13px; opacity: 0.75; margin-top: 8px; }
.cl-keys kbd { border: 1px solid #8886; border-radius: 3px; padding: 0 4px; font-size: 13px; }
/* Toasts over the top left of the base camera: at the top right they covered the subtask heading and
   the Stop button, at the bottom left Try again; a camera is only watched, and a toast goes in 4 s. */
.toast-wrap { top: 110px !important; bottom: auto !important; left: var(--size-6, 24px) !important;
              right: auto !important; align-items: start !important; }
/* The Coach tab: cameras fill their column but leave the subtask box and the buttons above the fold. */
.cl-top .cl-cams .cl-cam { flex: 1 1 0; min-width: 240px; }
.cl-top .cl-cam-stack { width: min(100%, calc(100vh - 330px)); }
.cl-side-col .cl-live-info { max-width: none; }
.cl-progress-label { font-size: 13px; opacity: 0.75; margin-top: 6px; }
/* Table headers wrap between words, never inside one. */
.table-wrap th, .table-wrap th * { word-break: keep-all !important; overflow-wrap: normal !important; hyphens: none; }
.cl-subgoals img { max-width: 224px; }
"""


def cameras_html(cameras: tuple[str, ...], size: tuple[int, int]) -> str:
    """A canvas per camera (fed by `/live/stream`) with a transparent one over it for the boxes."""
    return f'<div class="cl-cams">{_canvases(cameras, size)}</div>'


def _canvases(cameras: tuple[str, ...], size: tuple[int, int]) -> str:
    h, w = size
    return "".join(f'<div class="cl-cam"><div class="cl-cam-stack"><canvas data-camera="{c}" width="{w}" height="{h}">'
                   f'</canvas><canvas class="cl-overlay" data-overlay="{c}" width="{w}" height="{h}"></canvas></div>'
                   f'<div class="cl-cam-name">{c}</div></div>' for c in cameras)


def status_html(view: str = "coach", lights: bool = True) -> str:
    """What goes beside the cameras: the active subtask and its status, the objects in view, the
    keys (Coach tab only) and the status lights (unless `lights` is False: `lights_html` then puts them
    elsewhere). `view` is coach (ids cl-...) or autonomous (au-...)."""
    prefix = "au" if view == "autonomous" else "cl"
    objects = (f'<div id="{prefix}-objects" class="cl-objects"><span class="cl-in-view">In view:</span>'
               f'<span class="cl-object-list" data-view="{view}"></span>'
               f'<label class="cl-in-view"> <input type="checkbox" class="cl-boxes-toggle"> show boxes</label></div>')
    keys = KEYS_HTML if view == "coach" else ""
    return (f'<div id="{prefix}-live-info" class="cl-live-info" data-view="{view}"></div>{objects}{keys}'
            + (lights_html(view) if lights else ""))


def lights_html(view: str = "coach") -> str:
    """The status lights: robot (loop rate), VLA, database."""
    return f'<div id="{"au" if view == "autonomous" else "cl"}-lights" class="cl-lights"></div>'



def camera_html(cameras: tuple[str, ...], size: tuple[int, int], view: str = "coach") -> str:
    """The cameras with the status beside them in one block (the Autonomous tab's live panel)."""
    return f'<div class="cl-cams">{_canvases(cameras, size)}<div class="cl-side">{status_html(view)}</div></div>'


KEYS_HTML = ('<div class="cl-keys" id="cl-keys">Keys: <kbd>Enter</kbd> send · <kbd>F8</kbd> pause / resume · '
             '<kbd>Esc</kbd> stop · <kbd>F9</kbd> try again · <kbd>F10</kbd> end episode</div>')
