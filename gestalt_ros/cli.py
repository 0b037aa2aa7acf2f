"""``gestalt-ros``: one command, a subcommand per job.

gestalt-ros segment IMAGE --point X,Y --out DIR   the pipeline once on your photo (or --box, --mask)
gestalt-ros convert --ckpt FILE --out DIR  pix2gestalt's original checkpoint -> diffusers folder
gestalt-ros demo --out DIR                 bag of synthetic scenes -> node -> bag + PNGs
gestalt-ros replay BAG [--rate R] [--clock]  a recorded bag -> the running node -> bag of its outputs
gestalt-ros node [--ros-args ...]          the ROS 2 node (same as `ros2 run gestalt_ros gestalt_node`)
gestalt-ros train --config FILE --out DIR  train the embedded completion model
gestalt-ros average --out DIR A B ...     average the weights of trained models
gestalt-ros eval --annotations FILE --images-root DIR --out DIR
gestalt-ros synth --out DIR --scenes N     write a synthetic amodal dataset (generic JSON + PNGs)
gestalt-ros config                         print the ROS parameter file with every default
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from gestalt_ros.config import PRESETS, ConfigError, GestaltConfig
from gestalt_ros.prompts import PROMPT_KINDS


class UsageError(ValueError):
    """A command-line value that cannot be used: reported in one line, exit code 2."""


def _add_pipeline_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pipeline")
    group.add_argument("--preset", choices=sorted(PRESETS), help="named settings over the defaults (see config.py)")
    group.add_argument("--params", type=Path, help="ROS parameter file or plain YAML (default: built-in defaults)")
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter, e.g. completion.num_samples=8",
    )


def pipeline_config(args: argparse.Namespace) -> GestaltConfig:
    """Defaults (or ``--params``), then ``--preset``, then ``--set`` overrides."""
    base = GestaltConfig.from_yaml_file(str(args.params)) if args.params else GestaltConfig()
    if args.preset:
        base = base.with_preset(args.preset)
    return base.with_overrides(args.set)


def _cmd_config(args: argparse.Namespace) -> int:
    cfg = pipeline_config(args)
    target = f"config/{args.preset}.yaml" if args.preset else "config/gestalt.yaml"
    command = f"gestalt-ros config{f' --preset {args.preset}' if args.preset else ''} > {target}"
    sys.stdout.write(cfg.to_ros_yaml(command) if not args.flat else json.dumps(cfg.to_flat(), indent=2) + "\n")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import yaml

    from gestalt_ros.train.loop import TrainConfig, train
    from gestalt_ros.train.scene import SceneTrainConfig, train_scene
    from gestalt_ros.train.single_pass import SinglePassTrainConfig, train_single_pass

    if not args.config.is_file():
        raise UsageError(f"--config {args.config} does not exist")
    # ``kind`` names the model a config trains; without it, the completion model.
    kinds = {"single_pass": (SinglePassTrainConfig, train_single_pass), "scene": (SceneTrainConfig, train_scene)}
    kind = (yaml.safe_load(Path(args.config).read_text()) or {}).get("kind")
    if kind is not None and kind not in kinds:
        raise UsageError(f"{args.config}: unknown kind {kind!r} (known: {', '.join(kinds)}, or none: completion)")
    config_class, run = kinds.get(kind, (TrainConfig, train))
    try:
        cfg = config_class.from_yaml(args.config)
    except ValueError as err:
        raise UsageError(str(err)) from None
    for item in args.set:
        key, _, value = item.partition("=")
        if not hasattr(cfg, key):
            raise UsageError(f"unknown training key {key!r}")
        setattr(cfg, key, type(getattr(cfg, key))(value))
    if args.ycb_root:
        cfg.ycb_root = str(args.ycb_root)
    summary = run(cfg, args.out, cache_dir=args.cache_dir, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_average(args: argparse.Namespace) -> int:
    from gestalt_ros.train.loop import average_models

    average_models(args.models, args.out)
    print(f"wrote the mean of {len(args.models)} models to {args.out}")
    return 0


def _fraction_range(text: str) -> tuple[float, float]:
    """``"0.3,0.8"`` -> (0.3, 0.8): two fractions of the image, smallest first."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX, got {text!r}") from None
    if not 0 < low <= high <= 1:
        raise argparse.ArgumentTypeError(f"expected 0 < MIN <= MAX <= 1, got {text!r}")
    return low, high


def _cmd_synth(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from gestalt_ros.data.synthetic import SceneConfig, iter_scenes
    from gestalt_ros.data.writer import write_amodal_dataset
    from gestalt_ros.data.ycb import OBJECT_SETS

    scenes = iter_scenes(
        args.scenes,
        args.seed,
        objects=OBJECT_SETS[args.objects],
        config=SceneConfig(
            image_size=args.size, **({"object_width_frac": args.object_width} if args.object_width else {})
        ),
        ycb_root=args.ycb_root,
    )
    start = time.perf_counter()
    path = write_amodal_dataset(tqdm(scenes, total=args.scenes, desc="scenes", disable=args.quiet), args.out)
    elapsed = time.perf_counter() - start
    print(f"wrote {path}: {args.scenes} scenes in {elapsed:.1f} s ({1000 * elapsed / args.scenes:.0f} ms per scene)")
    return 0


def _cmd_node(args: argparse.Namespace, ros_args: list[str]) -> int:
    from gestalt_ros.ros.node import main as node_main

    return node_main(ros_args) or 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from gestalt_ros.eval.runner import run_eval

    for path, flag in ((args.annotations, "--annotations"), (args.images_root, "--images-root")):
        if not path.exists():
            raise UsageError(f"{flag} {path} does not exist")
    cfg = pipeline_config(args)
    if args.samples:
        cfg = cfg.with_overrides([f"completion.num_samples={args.samples}"])
    if args.mode == "scene":
        from gestalt_ros.eval.scene import run_scene_eval

        metrics = run_scene_eval(
            cfg, args.annotations, args.images_root, args.out, limit=args.limit, progress=not args.quiet
        )
        print(json.dumps({k: v for k, v in metrics.items() if k != "issues"}, indent=2))
        if metrics["n_images"] == 0:
            raise UsageError(f"no image could be scored from {args.annotations}; see {args.out / 'metrics.json'}")
        return 0
    metrics = run_eval(
        cfg, args.annotations, args.images_root, args.out, limit=args.limit, progress=not args.quiet, prompt=args.prompt
    )
    print(json.dumps({k: v for k, v in metrics.items() if k != "per_object"}, indent=2))
    if metrics["n_objects"] == 0:
        raise UsageError(f"no object could be scored from {args.annotations}; see {args.out / 'metrics.json'}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from gestalt_ros.eval.bench import run_bench, run_scene_bench

    if args.mode == "scene":
        numbers = run_scene_bench(
            pipeline_config(args), images=args.objects, warmup=args.warmup, image_size=args.size, width=args.width
        )
        print(json.dumps(numbers, indent=2))
        return 0
    numbers = run_bench(
        pipeline_config(args),
        objects=args.objects,
        warmup=args.warmup,
        image_size=args.size,
        width=args.width,
        prompt=args.prompt,
        annotations=args.annotations,
        images_root=args.images_root,
    )
    print(json.dumps(numbers, indent=2))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from gestalt_ros.pix2gestalt.convert import convert

    manifest = convert(
        args.ckpt, args.out, ema=not args.no_ema, num_heads=args.num_heads, trust_pickle=args.trust_pickle
    )
    counts = ", ".join(f"{name} {n:,}" for name, n in manifest["parameters"].items())
    print(
        f"wrote {args.out}/ ({manifest['unet_weights']} UNet weights; parameters: {counts}) in "
        f"{manifest['seconds']} s, peak RSS {manifest['peak_rss_mib']} MiB"
    )
    return 0


def _cmd_segment(args: argparse.Namespace) -> int:
    from gestalt_ros.segment import make_prompt, segment, segment_scene

    if args.scene:
        message = segment_scene(args.image, args.out, pipeline_config(args))
        for e in message["objects"]:
            print(f"{e['id']}: {e['label']} ({e['score']:.2f}), layer {e['layer']}, behind {e['occluded_by'] or '-'}")
        print(f"{len(message['objects'])} objects; wrote {args.out}/")
        return 0
    prompt = make_prompt(args.point, args.box, args.mask)
    message = segment(args.image, prompt, args.out, pipeline_config(args))
    entry = message["objects"][0]
    print(
        f"{entry['label']} ({entry['score']:.2f}), {entry['occlusion_ratio']:.0%} hidden, "
        f"amodal box {entry['amodal_bbox']}; wrote {args.out}/"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from gestalt_ros.demo import run_demo

    summary = run_demo(args.out, pipeline_config(args), scenes=args.scenes, seed=args.seed)
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from gestalt_ros.replay import replay

    summary = replay(
        args.bag,
        args.out,
        namespace=args.namespace,
        rate=args.rate,
        clock=args.clock,
        timeout=args.timeout,
        scene=args.scene,
    )
    print(summary.line())
    return 1 if summary.unanswered else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gestalt-ros", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("config", help="print the ROS parameter file with every default")
    _add_pipeline_args(p)
    p.add_argument("--flat", action="store_true", help="dotted names as JSON instead of the ROS YAML")
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser(
        "train",
        help="train an embedded model: completion, single-pass (kind: single_pass) or scene layers (kind: scene)",
    )
    p.add_argument("--config", type=Path, required=True, help="training YAML, e.g. config/train/train_cpu.yaml")
    p.add_argument("--ycb-root", type=Path, help="folder of the training objects' YCB models (<Name>/model.urdf)")
    p.add_argument("--out", type=Path, required=True, help="model directory to write")
    p.add_argument("--cache-dir", type=Path, default=Path("data_cache"), help="where rendered crops are cached")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a top-level training key")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("average", help="average the weights of models with one architecture (a model soup)")
    p.add_argument("--out", type=Path, required=True, help="model directory to write")
    p.add_argument("models", type=Path, nargs="+", help="model directories, e.g. runs/cpu_stage7 runs/cpu_stage8")
    p.set_defaults(func=_cmd_average)

    p = sub.add_parser("synth", help="write a synthetic amodal dataset (generic JSON + PNGs)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--scenes", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--objects", choices=("train", "heldout", "all"), default="heldout")
    p.add_argument("--size", type=int, default=128, help="image side, pixels")
    p.add_argument(
        "--object-width",
        type=_fraction_range,
        metavar="MIN,MAX",
        help="median object width as a fraction of the image width: the camera distance (default 0.15,0.55)",
    )
    p.add_argument("--ycb-root", type=Path, help="YCB models folder (default: the bundled held-out objects)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("eval", help="score the configured stages against the modal and convex-hull baselines")
    p.add_argument("--annotations", type=Path, required=True, help="generic amodal JSON, or COCOA JSON file/folder")
    p.add_argument("--images-root", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--samples", type=int, help="completions per object (completion.num_samples)")
    p.add_argument("--limit", type=int, help="score only the first K objects (scene mode: images)")
    p.add_argument(
        "--mode",
        choices=("prompt", "scene"),
        default="prompt",
        help="prompt: one object per prompt (below); scene: every object of each image, matched to the "
        "annotations, with their occlusion order (scene.*)",
    )
    p.add_argument(
        "--prompt",
        choices=PROMPT_KINDS,
        default="mask",
        help="what each object is prompted with: its visible mask (the paper's protocol), its visible box, "
        "or a click on its innermost visible pixel",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_pipeline_args(p)
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("bench", help="seconds per object (or image) and peak memory on held-out synthetic scenes")
    p.add_argument("--mode", choices=("prompt", "scene"), default="prompt", help="per prompted object, or per scene")
    p.add_argument("--objects", type=int, default=20, help="timed objects (scene mode: images)")
    p.add_argument("--warmup", type=int, default=2, help="untimed objects (images) first")
    p.add_argument("--size", type=int, default=256, help="rendered scene side, pixels (the frame's height)")
    p.add_argument("--width", type=int, default=0, help="pad frames to this width (--size 480 --width 640: VGA)")
    p.add_argument("--prompt", choices=PROMPT_KINDS, default="mask", help="visible mask, box, or innermost click")
    p.add_argument(
        "--annotations", type=Path, help="time the objects of this evaluation set instead (as eval reads it)"
    )
    p.add_argument("--images-root", type=Path, help="with --annotations: where its images are")
    _add_pipeline_args(p)
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("convert", help="original pix2gestalt checkpoint -> a diffusers folder (completion.weights)")
    p.add_argument("--ckpt", type=Path, required=True, help="the Lightning checkpoint, e.g. epoch=000005.ckpt")
    p.add_argument("--out", type=Path, required=True, help="folder to write")
    p.add_argument("--no-ema", action="store_true", help="the live UNet weights instead of the EMA copy")
    p.add_argument("--num-heads", type=int, default=8, help="UNet attention heads (not in the weights; pix2gestalt: 8)")
    p.add_argument("--trust-pickle", action="store_true", help="load with weights_only=False (runs the pickle's code)")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("segment", help="run the pipeline once on an image file and write masks, completion, JSON")
    p.add_argument("image", type=Path, help="photo (PNG, JPEG, ...)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--point", metavar="X,Y", help="a click on the object: column, row in pixels")
    which.add_argument("--box", metavar="X0,Y0,X1,Y1", help="a box around the visible part, pixels")
    which.add_argument(
        "--mask", type=Path, metavar="MASK.png", help="the visible part: white on black, the photo's size"
    )
    which.add_argument("--scene", action="store_true", help="no prompt: every object, in occlusion order (scene.*)")
    p.add_argument("--out", type=Path, required=True, help="folder for the outputs")
    _add_pipeline_args(p)
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser("demo", help="bag of synthetic scenes -> node -> bag of outputs + PNG overlays")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--scenes", type=int, default=4)
    p.add_argument("--seed", type=int, default=7)
    _add_pipeline_args(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("replay", help="replay a bag through the running gestalt_node and record its outputs")
    p.add_argument("bag", type=Path, help="rosbag2 bag (sqlite3 or MCAP: its folder, or a .db3/.mcap file)")
    p.add_argument("--rate", type=float, default=1.0, help="speed over the recording (0: wait for each answer)")
    p.add_argument("--out", type=Path, help="MCAP bag to write (default: BAG_gestalt beside the input)")
    p.add_argument("--namespace", default="/", help="the node's namespace; the bag's topics must be under it")
    p.add_argument("--clock", action="store_true", help="publish /clock from the bag's time (use_sim_time)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the node, and for answers")
    p.add_argument(
        "--scene", action="store_true", help="the node runs scene mode (scene.every_n 1): wait for each image's answer"
    )
    p.set_defaults(func=_cmd_replay)

    sub.add_parser("node", help="run the ROS 2 node; arguments after it go to ROS (--ros-args ...)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after `node` belongs to ROS, not to argparse.
    positional = [i for i, a in enumerate(argv) if not a.startswith("-")]
    if positional and argv[positional[0]] == "node":
        i = positional[0]
        args = build_parser().parse_args(argv[: i + 1])
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
        return _cmd_node(args, argv[i + 1 :])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except _user_errors() as err:
        parser.exit(2, f"gestalt-ros {args.command}: error: {err}\n")


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors in what the user passed: one line and exit code 2, not a traceback."""
    from gestalt_ros.data.ycb import YcbModelsNotFound
    from gestalt_ros.pix2gestalt import CheckpointError
    from gestalt_ros.prompts import PromptError
    from gestalt_ros.replay import ReplayError
    from gestalt_ros.segment import InputError

    return (
        UsageError,
        ConfigError,
        PromptError,
        InputError,
        YcbModelsNotFound,
        FileExistsError,
        CheckpointError,
        ReplayError,
    )


if __name__ == "__main__":
    sys.exit(main())
