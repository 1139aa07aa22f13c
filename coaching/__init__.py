"""The coaching session: episode lifecycle, the control loop between robot and VLA, and the subtask source."""
