"""Every topic name of the node, in one place.

Names are relative, so a namespace or a remap (``image:=/camera/image_raw``) moves them.
"""

# Inputs
IMAGE = "image"
PROMPT_POINT = "prompt/point"
PROMPT_BOX = "prompt/box"
PROMPT_MASK = "prompt/mask"

# Outputs, each stamped with the header of the image the prompt (or scene frame) referred to
VISIBLE_MASK = "visible_mask"
AMODAL_MASK = "amodal_mask"
COMPLETION = "completion"
OBJECTS = "objects"  # std_msgs/String JSON, every mode (gestalt_ros/schemas/objects.schema.json)
OVERLAY = "overlay"
STATUS = "status"
SCENE_VISIBLE_IDS = "scene/visible_ids"  # mode scene/both: mono16, the `objects` id seen at each pixel
SCENE_OVERLAY = "scene/overlay"  # mode scene/both: rgb8, every object coloured by its occlusion layer
DETECTIONS = "detections"  # vision_msgs/Detection2DArray, where vision_msgs is installed
DIAGNOSTICS = "/diagnostics"  # absolute, as diagnostic aggregators expect
