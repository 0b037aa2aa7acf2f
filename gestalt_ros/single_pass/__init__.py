"""The single-pass model: a click, a box or a visible mask in; visible mask, amodal mask and
their confidence out, in one forward pass of a small network (``model.py``), with no diffusion.

``prompting.py`` turns prompts into the network's inputs; ``predictor.py`` runs it as the
``single_pass`` visible and amodal stages.
"""
