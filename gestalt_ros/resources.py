"""Where the package's data folders (assets/, config/, model/, launch/) live.

In a source checkout or an editable install they sit beside the Python package; after a
wheel or colcon install, ``setup.py`` puts them under ``<prefix>/share/gestalt_ros``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "gestalt_ros"
PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"


def share_dir(name: str) -> Path:
    """Path of the data folder ``name`` ("assets", "config", "model" or "launch").

    Looked for beside the package (a source checkout or editable install), then where the
    ament index says the package is installed (colcon, a robot's ROS), then under the
    Python prefix (a wheel), so each install finds its own copy first.
    """
    candidates = [Path(__file__).resolve().parent.parent / name]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)) / name)
    except Exception:  # noqa: BLE001 - ament_index is optional and raises its own errors
        pass
    candidates.append(Path(sys.prefix) / "share" / PACKAGE / name)
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(f"gestalt_ros data folder {name!r} not found; looked in {[str(p) for p in candidates]}")


def fastdds_profile() -> Path:
    """The writer-side Fast DDS profile with a 16 MB shared-memory segment (large images)."""
    return share_dir("config") / "fastdds_shm.xml"


def select_fastdds_profile() -> str:
    """Point Fast DDS at the shipped writer profile unless the user chose one; returns a line for the log.

    Must run before the first participant of the process exists: Fast DDS reads the file once.
    """
    chosen = os.environ.get(PROFILE_ENV)
    if chosen:
        return f"Fast DDS profile from {PROFILE_ENV}: {chosen}"
    try:
        path = fastdds_profile()
    except FileNotFoundError as err:
        return f"no Fast DDS profile ({err}); large outputs may not reach best-effort readers in other processes"
    os.environ[PROFILE_ENV] = str(path)
    return f"Fast DDS profile (shipped, 16 MB shared memory): {path}"
