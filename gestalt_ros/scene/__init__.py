"""Scene mode: every object in view, amodal and in occlusion order (no prompt)."""
