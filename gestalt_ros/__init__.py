"""gestalt_ros: amodal perception (pix2gestalt) for ROS 2; the pipeline works without ROS.

``from gestalt_ros import Pix2GestaltPipeline`` loads diffusers and torch on first use only.
"""

from __future__ import annotations

from typing import Any

_LAZY = {"Pix2GestaltPipeline": "gestalt_ros.pix2gestalt.pipeline", "GestaltPipeline": "gestalt_ros.pipeline"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gestalt_ros' has no attribute {name!r}")
