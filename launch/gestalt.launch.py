"""Start gestalt_node on a robot with ROS 2 installed (``launch`` has no PyPI wheel).

    ros2 launch gestalt_ros gestalt.launch.py image_topic:=/camera/color/image_raw device:=cuda

Parameter defaults live in the params file (config/gestalt.yaml, generated from
gestalt_ros/config.py); this file only picks the file, the namespace, the camera topic and,
optionally, the device.
"""

# ruff: noqa: I001 - the repository's launch/ folder makes the `launch` package look first-party
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "gestalt_ros"
EXECUTABLE = "gestalt_node"
PROFILE_ENV = "FASTDDS_DEFAULT_PROFILES_FILE"


def _node(context: LaunchContext) -> list[Node]:
    """The node, with ``device`` overriding the params file only when the argument is given."""
    parameters: list = [LaunchConfiguration("params_file").perform(context)]
    device = LaunchConfiguration("device").perform(context)
    if device:
        parameters.append({"device": device})
    return [
        Node(
            package=PACKAGE,
            executable=EXECUTABLE,
            name=EXECUTABLE,
            namespace=LaunchConfiguration("namespace"),
            parameters=parameters,
            remappings=[("image", LaunchConfiguration("image_topic"))],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    profile = os.path.join(share, "config", "fastdds_shm.xml")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, "config", "gestalt.yaml"),
                description="ROS parameter file for gestalt_node (every parameter with its default)",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
            DeclareLaunchArgument(
                "image_topic", default_value="image_raw", description="camera topic remapped onto the node's 'image'"
            ),
            DeclareLaunchArgument(
                "device", default_value="", description="'cpu' or 'cuda[:N]'; empty keeps the params file's value"
            ),
            # Large outputs (completions, overlays) reach best-effort readers in other processes only
            # with a big shared-memory segment on the writer; keep a profile the user already chose.
            SetEnvironmentVariable(PROFILE_ENV, EnvironmentVariable(PROFILE_ENV, default_value=profile)),
            OpaqueFunction(function=_node),
        ]
    )
