"""Errors a machine's set-up causes, as one sentence naming the fix (issue 22, fault 7).

`explain(error)` recognises the graphics backend (MUJOCO_GL unset, wrong, or its library or
display missing), a missing system library, a port in use, a path that cannot be read or written,
and a full disk, from the exception's type and text, so it also works on an error a child
process (the VLA server) passed on as text. Anything else is not the environment's doing: None,
and the caller lets it surface as the bug it is.
"""

from __future__ import annotations

import errno
import os
import re

INSTALL = "run ./install.sh (it installs libegl1, libgl1 and libgl1-mesa-dri)"
_GL_CONTEXT = ("OpenGL platform library has not been loaded", "gladLoadGL", "mjr_makeContext",
               "EGL device display", "eglInitialize", "eglGetDisplay", "eglChooseConfig", "EGL_", "GLFW",
               "OSMesa", "glGetError", "PyOpenGL", "OpenGL.error", "No valid GL context")
_LIBRARY = re.compile(r"(lib[\w.+-]+\.so[\w.]*)[^\n]*(cannot open shared object file|No such file)"
                      r"|(?:Unable to load|could not load|cannot load)[^\n]*?(lib[\w.+-]+\.so[\w.]*|EGL|OSMesa)", re.I)
_ADDRESS = re.compile(r"listen on (?:tcp://)?(\S+):(\d+)")  # how coachlab's own port errors name the address


def explain(error: BaseException) -> str | None:
    """One sentence naming the fix, if `error` comes from the machine's set-up; else None."""
    text = f"{type(error).__name__}: {error}"
    gl = os.environ.get("MUJOCO_GL", "")
    if "invalid value for environment variable MUJOCO_GL" in text:
        return (f"MUJOCO_GL={gl!r} is not a rendering backend MuJoCo knows: unset it (coachlab renders with egl) "
                "or set it to egl, osmesa or glx.")
    library = _LIBRARY.search(text)
    if library and not any(k in text for k in ("EGL device display",)):
        name = next(g for g in library.groups() if g and g.lower().startswith(("lib", "egl", "osmesa")))
        return f"A system library is missing ({name}): {INSTALL}, or install the package that provides it."
    if any(k in text for k in _GL_CONTEXT):
        backend = gl or "egl"
        fix = {"osmesa": "install libosmesa6 or use MUJOCO_GL=egl",
               "glx": "run it under a display (DISPLAY set) or use MUJOCO_GL=egl on a headless machine"}.get(
            backend, f"{INSTALL}; on a machine without a GPU Mesa's software EGL is used")
        return f"MuJoCo cannot render with the {backend} graphics backend (MUJOCO_GL={backend}): {fix}."
    code = getattr(error, "errno", None)
    if code == errno.EADDRINUSE or "Address already in use" in text:
        where = _ADDRESS.search(text)
        port = f"Port {where.group(2)} on {where.group(1)} is" if where else "The port is"
        return f"{port} already in use: choose another --port, or stop whatever holds it."
    if isinstance(error, OSError) and code in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.ENOENT):
        where = error.filename or "a file coachlab needs"
        return (f"Cannot use {where} ({error.strerror}): fix its permissions or mount, or point coachlab elsewhere "
                "(--db / $COACHLAB_DB, $XDG_DATA_HOME for the data dir, --out for outputs).")
    if code == errno.ENOSPC or "No space left on device" in text:
        return "The disk is full: free some space (or write elsewhere) and run the command again."
    return None
