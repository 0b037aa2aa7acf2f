"""The demo end to end: bag in, real node over rclpy, bag out, PNGs."""

import json

from rosbags.rosbag2 import Reader

from gestalt_ros.cli import main


def test_demo_writes_bags_and_pngs(tmp_path, tiny_model_dir, ycb_root):
    out = tmp_path / "demo"
    code = main(
        [
            "demo",
            "--out",
            str(out),
            "--scenes",
            "2",
            "--set",
            f"completion.weights={tiny_model_dir}",
            "--set",
            "completion.num_samples=2",
        ]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenes"] == 2 and len(summary["prompts"]) == 6
    assert summary["node_status"]["prompts"]["processed"] == 6 and summary["node_status"]["prompts"]["dropped"] == 0
    with Reader(out / "output_bag") as reader:
        topics = {c.topic: c.msgcount for c in reader.connections}
    for name in ("visible_mask", "amodal_mask", "completion", "objects", "overlay"):
        assert topics[f"/camera/{name}"] == 6, name
    pngs = sorted(out.glob("prompt_*.png"))
    assert [p.name.split("_")[-1] for p in pngs] == ["point.png", "box.png", "mask.png"] * 2
    assert all(p.stat().st_size > 1000 for p in pngs)
