"""Every topic name of the node, in one place.

Names are relative, so a namespace or a remap (``image:=/camera/image_raw``) moves them.
"""

# Inputs
IMAGE = "image"
PROMPT_POINT = "prompt/point"
PROMPT_BOX = "prompt/box"
PROMPT_MASK = "prompt/mask"

# Outputs, each stamped with the header of the image the prompt referred to
VISIBLE_MASK = "visible_mask"
AMODAL_MASK = "amodal_mask"
COMPLETION = "completion"
OBJECTS = "objects"
OVERLAY = "overlay"
STATUS = "status"
DETECTIONS = "detections"  # vision_msgs/Detection2DArray, where vision_msgs is installed
DIAGNOSTICS = "/diagnostics"  # absolute, as diagnostic aggregators expect
