"""The `malformed_frame` fault's frames: entries of the protocol's malformed-frame catalogue."""
from __future__ import annotations

from services.protocol_malformed import frames as malformed_frames  # noqa: F401  (worker.py's name for it)
