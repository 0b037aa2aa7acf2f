"""gestalt_ros: amodal perception (pix2gestalt) for ROS 2; the pipeline works without ROS."""
