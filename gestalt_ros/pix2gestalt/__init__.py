"""pix2gestalt (Ozguroglu et al., CVPR 2024) in diffusers: converter, pipeline and completion stage."""


class CheckpointError(ValueError):
    """A file that is not a (complete) pix2gestalt checkpoint; the message names what is missing."""
