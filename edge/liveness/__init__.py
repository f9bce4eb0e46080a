"""Liveness: whether a live face, not a photo or a screen, stands in front of the camera (edge.liveness.checks)."""
