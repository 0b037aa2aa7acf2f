"""The demo end to end: bag in, real node over rclpy, bag out, PNGs."""

import json

import pytest
from conftest import check_objects_message
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader
from std_msgs.msg import String

from gestalt_ros.cli import main


@pytest.mark.parametrize("overlay", [True, False], ids=["overlay", "no_overlay"])
def test_demo_writes_bags_and_pngs(tmp_path, tiny_model_dir, overlay):
    out = tmp_path / "demo"
    settings = [f"completion.weights={tiny_model_dir}", "completion.num_samples=2", f"ros.publish_overlay={overlay}"]
    code = main(["demo", "--out", str(out), "--scenes", "2", *(a for s in settings for a in ("--set", s))])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenes"] == 2 and len(summary["prompts"]) == 6
    assert summary["node_status"]["prompts"]["processed"] == 6 and summary["node_status"]["prompts"]["dropped"] == 0
    with Reader(out / "output_bag") as reader:
        topics = {c.topic: c.msgcount for c in reader.connections}
        messages = [
            json.loads(deserialize_message(raw, String).data)
            for conn, _, raw in reader.messages()
            if conn.topic == "/camera/objects"
        ]
    for name in ("visible_mask", "amodal_mask", "completion"):
        assert topics[f"/camera/{name}"] == 6, name
    assert topics.get("/camera/overlay", 0) == (6 if overlay else 0)
    # The node runs both modes: six prompt answers and one scene answer per image.
    assert topics["/camera/objects"] == 8 and topics["/camera/scene/visible_ids"] == 2
    assert summary["scenes_answered"] == 2
    entries = [e for m in messages for e in check_objects_message(m)]
    prompted = [e for e in entries if e["prompt"] is not None]
    assert [e["prompt"]["kind"] for e in prompted] == [p["kind"] for p in summary["prompts"]]
    assert all("layer" in e and "amodal_rle" in e for e in entries if e["prompt"] is None)
    scene_pngs = sorted(out.glob("scene_*.png"))
    assert len(scene_pngs) == 2 and all(p.stat().st_size > 1000 for p in scene_pngs)
    pngs = sorted(out.glob("prompt_*.png"))
    assert [p.name.split("_")[-1] for p in pngs] == ["point.png", "box.png", "mask.png"] * 2
    assert all(p.stat().st_size > 1000 for p in pngs)
    assert len(list(out.glob("overlay_*.png"))) == (6 if overlay else 0)
