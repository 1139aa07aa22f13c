"""The fixed words of the schema (episode modes and statuses, segment sources).

Kept free of imports so the command line can offer them as choices without loading SQLAlchemy.
"""

from __future__ import annotations

MODES = ("coached", "autonomous", "mixed")
STATUSES = ("running", "success", "failure", "aborted", "interrupted")
FINAL_STATUSES = STATUSES[1:]  # what an episode may end as
SOURCES = ("coach", "policy", "correction")
