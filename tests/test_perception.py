"""Perception: the segmentation oracle on hand-built scenes, the `Detector` seam's contract on the
oracle and the learned detector, learning on a tiny synthetic set, the detections cache of stored
episodes, and every bad input answered with one sentence."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from coaching.detector import Detection
from distill.dataset import DistillError


def _scene_robot(fixtures, items, drawer_open: float | None = None):
    import mujoco

    from sim.mujoco_robot import MujocoRobot
    from sim.objects import SceneObject
    from sim.scene import Placement, SceneSpec

    robot = MujocoRobot()
    robot.load(SceneSpec(fixtures, [Placement(SceneObject(f"{c}_{k}", k, c), xy, 0.0) for k, c, xy in items]))
    if drawer_open is not None:
        robot.data.joint("drawer_slide").qpos[0] = drawer_open
        mujoco.mj_forward(robot.model, robot.data)
    return robot


def _put(robot, name: str, xyz) -> None:
    import mujoco

    adr = robot.model.joint(name).qposadr[0]
    robot.data.qpos[adr:adr + 3] = xyz
    robot.data.qpos[adr + 3:adr + 7] = (1, 0, 0, 0)
    mujoco.mj_forward(robot.model, robot.data)


def test_oracle_lists_what_each_camera_really_sees():
    from sim.scene import CABINET
    from sim.segmentation import SegmentationOracle

    robot = _scene_robot(("cabinet",), [("cup", "red", (0.35, 0.15)), ("block", "blue", (0.30, -0.15)),
                                        ("can", "green", (0.45, 0.25))], drawer_open=0.0)
    try:
        # the green can goes inside the closed drawer: no camera can see it
        _put(robot, "green_can", (CABINET["pos"][0], CABINET["pos"][1], 0.05))
        oracle = SegmentationOracle(robot)
        images = {cam: robot.render(cam) for cam in robot.config.cameras}
        found = oracle.detect(images)
        base = {d.label for d in found if d.camera == "base"}
        assert base == {"red cup", "blue block"}
        for d in found:
            h, w = images[d.camera].shape[:2]
            assert 0 <= d.box[0] < d.box[2] <= w and 0 <= d.box[1] < d.box[3] <= h
            assert d.mask.shape == (h, w) and d.mask.sum() >= 12
        views = {(v.camera, v.label): v for v in oracle.views(["base"])}
        assert views[("base", "red cup")].visible_fraction > 0.95  # nothing in front of it

        # open the drawer: the can shows from above, in the base camera
        robot.data.joint("drawer_slide").qpos[0] = CABINET["drawer_travel"]
        import mujoco
        mujoco.mj_forward(robot.model, robot.data)
        _put(robot, "green_can", (CABINET["pos"][0] - CABINET["drawer_travel"], CABINET["pos"][1], 0.06))
        assert "green can" in {d.label for d in oracle.detect({"base": images["base"]})}
        with pytest.raises(ValueError, match="no camera"):
            oracle.detect({"side": images["base"]})
    finally:
        robot.close()


def test_oracle_gives_a_partly_hidden_item_a_small_visible_fraction():
    from sim.scene import TUB
    from sim.segmentation import SegmentationOracle

    # a can in the tub just behind its near wall: the wall hides its lower part from the base camera
    robot = _scene_robot(("tub",), [("can", "red", (0.45, 0.0)), ("cup", "blue", (0.40, -0.1))])
    try:
        _put(robot, "red_can", (TUB["pos"][0], TUB["pos"][1] - TUB["half"][1] + 0.03, 0.045))
        views = {v.label: v for v in SegmentationOracle(robot).views(["base"])}
        assert views["blue cup"].visible_fraction > 0.95
        assert 0.05 < views["red can"].visible_fraction < 0.9, views["red can"].visible_fraction
    finally:
        robot.close()


def _contract(detector, images):
    found = detector.detect(images)
    assert isinstance(found, list)
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    for d in found:
        assert isinstance(d, Detection) and isinstance(d.label, str) and " " in d.label
        assert d.camera in images
        h, w = images[d.camera].shape[:2]
        assert 0 <= d.box[0] < d.box[2] <= w and 0 <= d.box[1] < d.box[3] <= h
        assert 0.0 <= d.score <= 1.0
    return found


@pytest.fixture(scope="module")
def shipped():
    from app import embedded

    return embedded.detector("learned")


def test_detector_seam_contract_on_the_oracle_and_the_shipped_detector(robot, shipped):
    from sim.segmentation import SegmentationOracle

    obs = robot.reset("bussing", 3)
    truth = {d.label for d in _contract(SegmentationOracle(robot), obs.images) if d.camera == "base"}
    seen = {d.label for d in _contract(shipped, obs.images) if d.camera == "base"}
    assert len(truth) >= 4
    assert len(seen & truth) >= 0.75 * len(truth), (seen, truth)  # the shipped weights are a working detector
    assert len(seen - truth) <= 1


def test_a_detector_trained_on_a_tiny_set_beats_a_trivial_baseline(tmp_path):
    import torch

    from distill.detector_metrics import DetectionScore
    from distill.detector_model import DetectorConfig, DetectorNet
    from distill.detector_train import DetectorTrainConfig, evaluate, train_detector
    from distill.learned_detector import LearnedDetector
    from sim.synthetic_scenes import SyntheticConfig, synthetic_frames

    config = SyntheticConfig(cameras=("base",), max_items=4)
    train = list(synthetic_frames(120, 1, config))
    held_out = list(synthetic_frames(20, 2, config))
    record = train_detector(train, held_out, tmp_path / "det", DetectorTrainConfig(steps=200, progress=False))
    assert record["loss_last"]["kind"] < record["loss_first"]["kind"]
    learned = evaluate(LearnedDetector.load(tmp_path / "det"), held_out)

    # the trivial baseline: call out the training set's most common label in every image
    labels = [v.label for f in train for v in f.views]
    common = max(set(labels), key=labels.count)
    baseline = DetectionScore()
    for f in held_out:
        baseline.add("base", [Detection(common, "base", (0, 0, 10, 10), 1.0)], f.views)
    assert learned["recall"]["base"] > baseline.recall("base") + 0.05, (learned, baseline.summary())
    assert learned["precision"]["base"] > baseline.precision("base")

    # --init with no joint steps: only the kind classifier trains on, on the finished first stage's proposals
    start = LearnedDetector.load(tmp_path / "det").net
    before = {k: v.clone() for k, v in start.state_dict().items()}
    again = train_detector(train[:60], [], tmp_path / "det2",
                           DetectorTrainConfig(steps=0, classifier_steps=40, progress=False), init=start)
    after = LearnedDetector.load(tmp_path / "det2").net.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.startswith("segmenter."))
    assert not all(torch.equal(after[k], v) for k, v in before.items() if k.startswith("classifier."))
    assert again["mined_crops"] > 0 and again["kind_loss_last_classifier_only"] is not None
    # `--init --steps 0` alone retrains the classifier the shipped length, not zero steps (a new user's trial)
    assert DetectorTrainConfig(steps=0).classifier_phase_steps == 1500
    assert DetectorTrainConfig(steps=200).classifier_phase_steps == 150
    foreign = DetectorNet(DetectorConfig(kinds=("cup",), colours=("red",)))
    with pytest.raises(ValueError, match="does not know"):
        train_detector(train[:5], [], tmp_path / "det3", DetectorTrainConfig(steps=0, progress=False), init=foreign)


def test_bad_images_get_one_sentence(shipped):
    good = np.zeros((224, 224, 3), np.uint8)
    for bad, needle in (({"base": good.astype(np.float32)}, "HxWx3 uint8"),
                        ({"base": good[..., 0]}, "HxWx3 uint8"),
                        ({"base": np.zeros((4, 4, 3), np.uint8)}, "at least 16x16"),
                        ({}, "dict of camera name"),
                        ({"base": "not an image"}, "HxWx3 uint8")):
        with pytest.raises(ValueError, match=needle) as err:
            shipped.detect(bad)
        assert "\n" not in str(err.value)
    odd = np.full((100, 130, 3), 200, np.uint8)  # any size works, not only multiples of 8
    assert isinstance(shipped.detect({"side": odd}), list)


def test_bad_detector_folders_get_one_sentence(tmp_path, tiny_policy):
    from app import embedded
    from app.errors import UserError
    from distill.learned_detector import LearnedDetector

    cases = []
    cases.append((tmp_path / "missing", "no checkpoint directory"))
    wrong_kind = tiny_policy[1]  # a high-level policy checkpoint is not a detector
    cases.append((wrong_kind, "not a detector checkpoint"))
    corrupt = tmp_path / "corrupt"
    shutil.copytree(embedded.shipped_detector_dir(), corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 100)
    cases.append((corrupt, "corrupt"))
    no_weights = tmp_path / "no_weights"
    shutil.copytree(embedded.shipped_detector_dir(), no_weights)
    (no_weights / "model.safetensors").unlink()
    cases.append((no_weights, "has no model.safetensors"))
    bad_config = tmp_path / "bad_config"
    shutil.copytree(embedded.shipped_detector_dir(), bad_config)
    (bad_config / "config.json").write_text("{not json")
    cases.append((bad_config, "not valid JSON"))
    for folder, needle in cases:
        with pytest.raises(DistillError, match=needle) as err:
            LearnedDetector.load(folder)
        assert "\n" not in str(err.value) and "coachlab train-detector" in str(err.value)
    with pytest.raises(UserError, match="Unknown detector"):
        embedded.detector("yolo:/x")
    with pytest.raises(UserError, match="embedded sim robot"):
        embedded.detector("oracle", robot=None)
    assert embedded.detector("none").detect({"base": np.zeros((8, 8, 3), np.uint8)}) == []
    from app.app_config import AppConfig, AppConfigError

    with pytest.raises(AppConfigError, match="not the app"):
        AppConfig(detector="oracle").check()


def test_detections_of_stored_episodes_are_recomputed_and_cached(tmp_path, tiny_policy, shipped):
    from distill.detections import episode_detections
    from storage import load_episode, open_database

    db = open_database(tiny_policy[0])  # three coached sort_blocks episodes, from before detectors existed
    try:
        episode = load_episode(db, 1)
        cache = tmp_path / "cache"
        first = episode_detections(episode, shipped, cache, every=25)
        assert first and all(isinstance(d, Detection) for ds in first.values() for d in ds)
        assert any("block" in d.label for ds in first.values() for d in ds)
        files = list(cache.rglob("*.json"))
        assert len(files) == 1
        again = episode_detections(episode, shipped, cache, every=25)
        assert {k: [(d.label, d.camera) for d in v] for k, v in again.items()} == \
            {k: [(d.label, d.camera) for d in v] for k, v in first.items()}
        files[0].write_text("{damaged")  # a damaged cache is recomputed, not an error
        assert set(episode_detections(episode, shipped, cache, every=25)) == set(first)
        json.loads(files[0].read_text())
    finally:
        db.close()


def test_the_page_lists_an_item_only_once_it_is_seen_steadily():
    """One frame's false positive never reaches the object list; one frame's miss does not drop an
    item. The detector here injects those faults into the real watcher thread."""
    import time
    from types import SimpleNamespace

    from coaching.perception import PerceptionWatcher

    cup = Detection("red cup", "base", (1, 1, 9, 9), 0.9)
    ghost = Detection("blue can", "base", (20, 20, 30, 30), 0.6)
    script = [[cup], [cup, ghost], [], [cup], [cup]]  # the ghost once, the cup missed once

    class Scripted:
        def __init__(self):
            self.calls = 0

        def detect(self, images):
            found = script[min(self.calls, len(script) - 1)]
            self.calls += 1
            return found

    publish = []
    session = SimpleNamespace(on_frame=publish.append)
    detector = Scripted()
    watcher = PerceptionWatcher(session, detector, hz=50)
    listed = []
    try:
        for seq in range(len(script)):
            publish[0](SimpleNamespace(seq=seq, wall_time=0.0, images={"base": np.zeros((8, 8, 3), np.uint8)}))
            deadline = time.monotonic() + 5
            while detector.calls <= seq and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(0.03)
            listed.append(watcher.snapshot()["labels"])
    finally:
        watcher.close()
    assert all("blue can" not in labels for labels in listed), listed
    assert all(labels == ["red cup"] for labels in listed), listed
