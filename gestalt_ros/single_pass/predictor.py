"""The single-pass model as pipeline stages: ``visible.method`` and ``amodal.method`` ``single_pass``.

A box or a mask fixes the object's scale, so one forward pass in the window around it
answers. A click does not: the first pass tries the window sizes of
``single_pass.click_windows`` (else the model's ``click_windows``) around the click in one
batch and keeps the window whose predicted visible IoU is highest (or, with
``single_pass.click_first_pass: blend``, averages the windows' maps weighted by it); each
refinement pass then re-centres the window on the last visible mask, as a box is cut,
unless the last pass was already framed so (``single_pass.refine_skip_within``). A click
whose answer the network doubts tries the ``single_pass.click_fallback_windows`` too.

Every pass predicts both masks, so when both stages are single-pass the amodal stage takes
the amodal head of the pass that found the visible mask (``amodal_from_prompt_pass``)
rather than paying for another pass prompted with that mask. A model with an amodal branch
runs it only for the passes whose amodal mask is read (``PassResult.amodal``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import cv2
import numpy as np
import torch

from gestalt_ros.config import AmodalConfig, CompletionConfig, SinglePassStageConfig
from gestalt_ros.inference import for_inference
from gestalt_ros.prompts import CropWindow, check_prompt
from gestalt_ros.single_pass.model import BranchInput, SinglePassNet
from gestalt_ros.single_pass.prompting import box_window, click_window, image_tensor, object_window, prompt_maps
from gestalt_ros.timing import timed
from gestalt_ros.types import AmodalEstimate, BoxPrompt, MaskPrompt, PointPrompt, Prompt
from gestalt_ros.visible import box_region, grabcut, seed_from_probability


class PassResult:
    """One forward pass: the window and the model's crop-resolution probabilities.

    ``amodal`` may be a function returning the amodal probabilities and their IoU estimate,
    called when either is first read: with an amodal branch, a click tries several windows
    and reads the amodal outputs of one.
    """

    def __init__(
        self,
        window: CropWindow,
        visible: np.ndarray,
        amodal: np.ndarray | Callable[[], tuple[np.ndarray, float]],
        visible_iou: float,
        amodal_iou: float | None = None,
    ) -> None:
        self.window = window
        self.visible = visible  # (r, r) float32
        self.visible_iou = visible_iou
        self._amodal = amodal if callable(amodal) else (amodal, amodal_iou)

    @property
    def amodal(self) -> np.ndarray:
        """(r, r) float32 amodal probabilities."""
        return self._amodal_outputs()[0]

    @property
    def amodal_iou(self) -> float:
        return self._amodal_outputs()[1]

    def _amodal_outputs(self) -> tuple[np.ndarray, float]:
        if callable(self._amodal):
            self._amodal = self._amodal()
        return self._amodal


class SinglePassPredictor:
    """Runs the network on windows of one image; knows the click, box and mask protocols."""

    def __init__(self, model: SinglePassNet, options: SinglePassStageConfig, device: str | torch.device = "cpu"):
        self.model = for_inference(model, device)
        self.device = torch.device(device)
        self.options = options
        # The frame, the visible mask last handed out and the pass it came from: the amodal
        # stage's answer for exactly that mask on exactly that frame (compared by identity).
        self._last: tuple[np.ndarray, np.ndarray, PassResult] | None = None

    @classmethod
    def from_pretrained(cls, directory, options: SinglePassStageConfig, device: str = "cpu") -> SinglePassPredictor:
        return cls(SinglePassNet.from_pretrained(directory), options, device)

    @property
    def resolution(self) -> int:
        return self.model.config.resolution

    @torch.no_grad()
    def forward(self, image: np.ndarray, prompt: Prompt | list[Prompt], windows: list[CropWindow]) -> list[PassResult]:
        """One batched forward pass of ``prompt`` (or of each prompt of a list) in each window."""
        r, sigma = self.resolution, self.model.config.point_sigma
        prompts = prompt if isinstance(prompt, list) else [prompt] * len(windows)
        crops = np.stack([w.crop_image(image, r) for w in windows])
        maps = np.stack([prompt_maps(p, w, r, sigma) for p, w in zip(prompts, windows, strict=True)])
        # Channels-last like the weights (for_inference), so no convolution converts its input.
        maps = torch.from_numpy(maps).to(self.device).contiguous(memory_format=torch.channels_last)
        logits, iou, branch = self.model.forward_shared(image_tensor(crops).to(self.device), maps)
        prob = torch.sigmoid(logits).float().cpu().numpy()
        iou = iou.float().cpu().numpy()
        if branch is None:
            return [
                PassResult(w, prob[i, 0], prob[i, 1], float(iou[i, 0]), float(iou[i, 1])) for i, w in enumerate(windows)
            ]
        return [
            PassResult(w, prob[i, 0], partial(self._branch, branch.select(i)), float(iou[i, 0]))
            for i, w in enumerate(windows)
        ]

    @torch.no_grad()
    def _branch(self, branch: BranchInput) -> tuple[np.ndarray, float]:
        """The amodal branch for one pass: its probabilities and IoU estimate."""
        logits, iou = self.model.forward_branch(branch)
        return torch.sigmoid(logits)[0, 0].float().cpu().numpy(), float(iou[0, 0])

    def predict(self, image: np.ndarray, prompt: Prompt) -> PassResult:
        """The final pass for a checked prompt on ``image``."""
        height, width = image.shape[:2]
        cfg = self.model.config
        if isinstance(prompt, MaskPrompt):
            return self.forward(image, prompt, [object_window(prompt.mask, cfg.crop_scale)])[0]
        if isinstance(prompt, BoxPrompt):
            return self.forward(image, prompt, [box_window(prompt, cfg.crop_scale)])[0]
        assert isinstance(prompt, PointPrompt)
        return self.predict_clicks(image, [prompt])[0]

    def predict_clicks(
        self, image: np.ndarray, clicks: list[PointPrompt], fallback: bool = True, skip_alike: bool = True
    ) -> list[PassResult]:
        """The click protocol for several checked clicks on ``image`` at once: each pass is one batch.

        With ``fallback``, a click whose answer the network doubts tries the windows of
        ``single_pass.click_fallback_windows`` too (see ``_fall_back``). With ``skip_alike``,
        a refinement that would see the last pass's window is skipped (see ``_refine``).
        """
        within = self.options.refine_skip_within if skip_alike else 0.0
        height, width = image.shape[:2]
        tried = self._first_passes(image, clicks, self.options.window_fractions() or self.model.config.click_windows)
        # The first pass's IoU estimate, which with the final pass's is the answer's confidence.
        first_iou = [max(p.visible_iou for p in passes) for passes in tried]
        if self.options.click_first_pass == "blend":
            # A blended map has no window of its own: one pass around it gives the answer's.
            visible = [self._blend(passes, c, height, width) for passes, c in zip(tried, clicks)]
            best = self._refine(image, clicks, visible, max(self.options.refine_passes, 1), within)
        else:
            best = [max(passes, key=lambda p: p.visible_iou) for passes in tried]
            best = self._refine(image, clicks, best, self.options.refine_passes, within)
        if fallback:
            best = self._fall_back(image, clicks, best, first_iou, within)
        return best

    def _first_passes(
        self, image: np.ndarray, clicks: list[PointPrompt], fractions: tuple[float, ...]
    ) -> list[list[PassResult]]:
        """Each click in a window of each of ``fractions`` x min(H, W), all in one batch; per click."""
        side, n = min(image.shape[:2]), len(fractions)
        results = self.forward(
            image,
            [c for c in clicks for _ in fractions],
            [click_window(c.x, c.y, f * side) for c in clicks for f in fractions],
        )
        return [results[i * n : (i + 1) * n] for i in range(len(clicks))]

    def _refine(
        self,
        image: np.ndarray,
        clicks: list[PointPrompt],
        found: list[PassResult] | list[np.ndarray],
        passes: int,
        within: float = 0.0,
    ) -> list[PassResult]:
        """``passes`` passes per click, each re-centred on the last visible mask (given or found).

        A click whose last pass was already framed as this one would be, up to the jitter
        ``within`` (``single_pass.refine_skip_within``), keeps that pass: the network saw as
        much, and later passes would see the same window again, so the click is settled.
        """
        height, width = image.shape[:2]
        found = list(found)
        pending = range(len(found))
        for _ in range(passes):
            windows: dict[int, CropWindow] = {}
            for i in pending:
                f = found[i]
                visible = f if isinstance(f, np.ndarray) else self.visible_in_frame(f, clicks[i], height, width)
                window = object_window(visible, self.model.config.crop_scale)
                if isinstance(f, np.ndarray) or not _framed_alike(f.window, window, within):
                    windows[i] = window
            if not windows:
                break
            for i, result in zip(windows, self.forward(image, [clicks[i] for i in windows], list(windows.values()))):
                found[i] = result
            pending = list(windows)
        return found

    def _fall_back(
        self,
        image: np.ndarray,
        clicks: list[PointPrompt],
        best: list[PassResult],
        first_iou: list[float],
        within: float = 0.0,
    ) -> list[PassResult]:
        """Try other first windows for the clicks whose confidence is below ``click_fallback_below``.

        One window fits objects of one range of sizes: one that fills a third of a photo puts
        a 0.5 window inside it, and that window's answer is a part. Each fallback window is
        refined like the first, and the answer with the highest confidence (the product of
        its first and final passes' IoU estimates) is kept, the first one included.
        """
        options = self.options
        fractions = options.fallback_fractions()
        confidence = [f * b.visible_iou for f, b in zip(first_iou, best)]
        doubtful = [i for i, c in enumerate(confidence) if c < options.click_fallback_below]
        if not fractions or not doubtful:
            return best
        first = [p for passes in self._first_passes(image, [clicks[i] for i in doubtful], fractions) for p in passes]
        again = [clicks[i] for i in doubtful for _ in fractions]
        final = self._refine(image, again, first, max(options.refine_passes, 1), within)
        best = list(best)
        for n, i in enumerate(doubtful):
            tried = range(n * len(fractions), (n + 1) * len(fractions))
            candidates = [(confidence[i], best[i])] + [
                (first[k].visible_iou * final[k].visible_iou, final[k]) for k in tried
            ]
            best[i] = max(candidates, key=lambda c: c[0])[1]
        return best

    def remember(self, image: np.ndarray, visible: np.ndarray, result: PassResult) -> None:
        """Keep ``result`` as the pass behind the visible mask just handed out for ``image``."""
        self._last = (image, visible, result) if self.options.amodal_from_prompt_pass else None

    def pass_for(self, image: np.ndarray, visible: np.ndarray) -> PassResult | None:
        """The remembered pass if ``visible`` is the very mask handed out for ``image`` (taken once)."""
        last, self._last = self._last, None
        if last is not None and last[0] is image and last[1] is visible:
            return last[2]
        return None

    def _blend(self, passes: list[PassResult], prompt: PointPrompt, height: int, width: int) -> np.ndarray:
        """The first-pass windows' visible maps in the frame, averaged with their predicted IoUs as weights."""
        weights = [max(p.visible_iou, 1e-3) for p in passes]
        maps = [p.window.paste(p.visible, height, width, linear=True) for p in passes]
        blended = sum(w * m for w, m in zip(weights, maps)) / sum(weights)
        return _part_at_click(blended > self.options.mask_threshold, prompt)

    def visible_in_frame(
        self, result: PassResult, prompt: Prompt, height: int, width: int, image: np.ndarray | None = None
    ) -> np.ndarray:
        """The pass's visible mask at camera resolution: the part at the prompt, never empty.

        Given the ``image`` (a final pass) and with ``single_pass.grabcut_refine``, GrabCut
        redraws the pixels where the network is unsure, with colour models of this image.
        """
        if isinstance(prompt, MaskPrompt):
            return prompt.mask
        options = self.options
        probability = result.window.paste(result.visible, height, width, linear=True)
        mask = probability > options.mask_threshold
        if image is not None and options.grabcut_refine:
            seed = seed_from_probability(probability, options.mask_threshold, options.grabcut_sure)
            if isinstance(prompt, BoxPrompt):
                seed[~box_region(prompt, height, width)] = cv2.GC_BGD
            refined = grabcut(
                image, seed, result.window.clipped(height, width), options.grabcut_iterations, options.grabcut_side
            )
            if _kept(refined, mask, prompt, options.grabcut_min_iou):
                mask = refined
        if isinstance(prompt, PointPrompt):
            return _part_at_click(mask, prompt)
        return mask if mask.any() else box_region(prompt, height, width)


def _framed_alike(last: CropWindow, next_: CropWindow, within: float) -> bool:
    """Whether ``next_`` is ``last`` up to a scale of e^``within`` and a shift of
    ``within`` / 2 of its side per axis (the training windows' jitter)."""
    if within <= 0:
        return False
    shift = max(
        abs((next_.x0 + next_.width / 2) - (last.x0 + last.width / 2)),
        abs((next_.y0 + next_.height / 2) - (last.y0 + last.height / 2)),
    )
    return abs(np.log(next_.width / last.width)) <= within and shift <= within / 2 * last.width


def _kept(refined: np.ndarray, network: np.ndarray, prompt: Prompt, min_iou: float) -> bool:
    """Whether GrabCut's mask may replace the network's: it is not empty, it redrew edges (the
    two overlap by at least ``min_iou``) and, for a click, it still holds the clicked pixel."""
    if not refined.any() or (isinstance(prompt, PointPrompt) and not refined[int(prompt.y), int(prompt.x)]):
        return False
    return np.logical_and(refined, network).sum() >= min_iou * np.logical_or(refined, network).sum()


def _part_at_click(mask: np.ndarray, click: PointPrompt) -> np.ndarray:
    """The component of ``mask`` under the click (the largest if the click fell just outside;
    the clicked pixel alone if the mask is empty)."""
    x, y = int(click.x), int(click.y)
    if not mask.any():
        mask = mask.copy()
        mask[y, x] = True
        return mask
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return labels == (labels[y, x] or int(np.argmax(np.bincount(labels[labels > 0]))))


class SinglePassSegmenter:
    """``visible.method: single_pass``: the network's visible head."""

    def __init__(self, predictor: SinglePassPredictor) -> None:
        self.predictor = predictor
        self._image: np.ndarray | None = None

    def set_image(self, image: np.ndarray) -> None:
        """The network embeds each window, not the frame: the frame is kept for the prompts."""
        self._image = image

    def predict(self, prompt: Prompt) -> np.ndarray:
        if self._image is None:
            raise RuntimeError("call set_image(image) before predict(prompt)")
        height, width = self._image.shape[:2]
        prompt = check_prompt(prompt, height, width)
        if isinstance(prompt, MaskPrompt):
            return prompt.mask  # the answer already
        result = self.predictor.predict(self._image, prompt)
        visible = self.predictor.visible_in_frame(result, prompt, height, width, self._image)
        self.predictor.remember(self._image, visible, result)
        return visible


class SinglePassAmodal:
    """``amodal.method: single_pass``: the network's amodal head, prompted with the visible mask
    (or, after a single-pass click or box, the amodal head of that pass).

    Nothing is synthesized: the published completion is the camera's visible pixels with the
    hidden part filled by inpainting from them (``cv2.inpaint``), white outside the mask.
    """

    def __init__(self, predictor: SinglePassPredictor) -> None:
        self.predictor = predictor

    def estimate(
        self, image: np.ndarray, visible: np.ndarray, completion: CompletionConfig, amodal: AmodalConfig, seed: int
    ) -> AmodalEstimate:
        from gestalt_ros.amodal import completion_in_frame, to_frame

        height, width = visible.shape
        timings: dict[str, float] = {}
        r = self.predictor.resolution
        with timed(timings, "amodal"):
            result = self.predictor.pass_for(image, visible) or self.predictor.predict(image, MaskPrompt(visible))
            window = result.window
            crop_visible = window.crop_mask(visible, r)
            # The synthesis stage's post-processing, with the network's probability as evidence.
            mask = to_frame(result.amodal, self.predictor.options.mask_threshold, crop_visible, visible, window, amodal)
            crop_amodal = window.crop_mask(mask, r)
            crop = window.crop_image(image, r)
            hidden = (crop_amodal & ~crop_visible).astype(np.uint8)
            filled = cv2.inpaint(crop, hidden, 3, cv2.INPAINT_TELEA) if hidden.any() else crop
            filled = np.where(crop_amodal[..., None], filled, np.uint8(255))
        return AmodalEstimate(
            amodal_mask=mask,
            agreement=window.paste(result.amodal, height, width, linear=True),
            completion=completion_in_frame(filled, mask, window),
            completion_crop=filled,
            completions=filled[None],
            sample_masks=crop_amodal[None],
            crop_box=window.box,
            timings=timings,
        )
