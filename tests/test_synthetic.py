import itertools
import json

import numpy as np
import pytest
from datasets.distributed import split_dataset_by_node

from foveated_vlm.data.synthetic import (
    ANSWERS,
    SyntheticVideoConfig,
    _shape_mask,
    clip_seed,
    generate_clip,
    synthetic_dataset,
    synthetic_stream,
)

CONFIGS = {
    "caption": SyntheticVideoConfig(),
    "caption_many": SyntheticVideoConfig(num_objects=(2, 4), frame_size=64, num_frames=12),
    "direction": SyntheticVideoConfig(task="clutter", question="direction", num_objects=(4, 6)),
    "quadrant": SyntheticVideoConfig(task="clutter", question="quadrant"),
    "mark": SyntheticVideoConfig(task="clutter", question="mark", background="plain"),
}
SEEDS = range(60)
MARK_RGB = [0, 0, 0]


def clips(name):
    return [generate_clip(seed, CONFIGS[name]) for seed in SEEDS]


def simulate(position, velocity, low, high, num_frames):
    """Step-by-step reflection, independent of the closed-form fold the generator uses."""
    p, v = np.array(position, float), np.array(velocity, float)
    positions, bounces = [p.copy()], []
    for t in range(1, num_frames):
        p = p + v
        for axis, (low_edge, high_edge) in enumerate((("left", "right"), ("top", "bottom"))):
            if p[axis] > high:
                p[axis], v[axis] = 2 * high - p[axis], -v[axis]
                bounces.append([t, high_edge])
            elif p[axis] < low:
                p[axis], v[axis] = 2 * low - p[axis], -v[axis]
                bounces.append([t, low_edge])
        positions.append(p.copy())
    return np.stack(positions), bounces


@pytest.mark.parametrize("name", CONFIGS)
def test_same_seed_same_clip_other_seed_other_clip(name):
    config = CONFIGS[name]
    np.random.seed(0)
    expected_global_draw = np.random.random()
    np.random.seed(0)
    a, b, other = generate_clip(7, config), generate_clip(7, config), generate_clip(8, config)
    assert np.random.random() == expected_global_draw  # the global RNG is never touched
    assert a.frames.dtype == np.uint8
    assert a.frames.shape == (config.num_frames, config.frame_size, config.frame_size, 3)
    assert np.array_equal(a.frames, b.frames)
    assert (a.prompt, a.answer, a.caption, a.ground_truth) == (b.prompt, b.answer, b.caption, b.ground_truth)
    assert not np.array_equal(a.frames, other.frames)
    assert json.loads(json.dumps(a.ground_truth)) == a.ground_truth  # plain JSON types only


@pytest.mark.parametrize("name", CONFIGS)
def test_target_shows_its_colour_at_its_recorded_centre(name):
    for clip in clips(name):
        truth = clip.ground_truth
        target = truth["objects"][truth["target"]]
        assert truth["target"] == len(truth["objects"]) - 1  # drawn last, so never occluded
        positions = np.asarray(target["positions"])  # [T, 2]
        centres = np.floor(positions).astype(int)  # [T, 2] pixel (x, y) under the centre
        seen = clip.frames[np.arange(len(centres)), centres[:, 1], centres[:, 0]]  # [T, 3]
        expected = MARK_RGB if target["marked"] else target["rgb"]
        assert (seen == expected).all(), (clip.seed, seen, expected)
        # The whole shape, masked over the full frame rather than the generator's window, is painted.
        grid = np.arange(truth["frame_size"]) + 0.5
        dx, dy = grid[None, None, :] - positions[:, 0, None, None], grid[None, :, None] - positions[:, 1, None, None]
        body = clip.frames[_shape_mask(target["shape"], dx, dy, target["size"] / 2)]  # [P, 3]
        own = (body == target["rgb"]).all(-1)
        assert own.any() and (own | (body == MARK_RGB).all(-1)).all(), clip.seed


def test_paint_stays_inside_the_objects():
    config = SyntheticVideoConfig(task="clutter", num_objects=(5, 5), background="plain", frame_size=48)
    for clip in (generate_clip(seed, config) for seed in range(20)):
        painted = (clip.frames != 16).any(-1)  # [T, H, W]; 16 is the plain background level
        covered = np.zeros_like(painted)
        centres = (np.arange(config.frame_size) + 0.5)[None, :]  # [1, W] pixel centres
        for obj in clip.ground_truth["objects"]:
            positions, r = np.asarray(obj["positions"]), obj["size"] / 2  # [T, 2]
            inside_x = np.abs(centres - positions[:, :1]) <= r  # [T, W]
            inside_y = np.abs(centres - positions[:, 1:]) <= r  # [T, H]
            covered |= inside_y[:, :, None] & inside_x[:, None, :]
        assert painted.any() and not (painted & ~covered).any()


@pytest.mark.parametrize("name", CONFIGS)
def test_positions_stay_inside_and_motion_bounces(name):
    bounced = 0
    for clip in clips(name):
        size = clip.ground_truth["frame_size"]
        for obj in clip.ground_truth["objects"]:
            positions, r = np.asarray(obj["positions"]), obj["size"] / 2  # [T, 2]
            assert ((positions >= r) & (positions <= size - r)).all()
            expected, bounces = simulate(positions[0], obj["velocity"], r, size - r, len(positions))
            np.testing.assert_allclose(positions, expected, atol=1e-9)
            assert obj["bounces"] == bounces
            if obj["motion"] == "static":
                assert obj["velocity"] == [0.0, 0.0] and not obj["bounces"]
            bounced += bool(bounces)
    assert bounced > 0  # the seeds exercise reflections


@pytest.mark.parametrize("question", ANSWERS)
def test_clutter_answer_is_the_targets_and_labels_are_balanced(question):
    labels = []
    for clip in clips(question):
        truth = clip.ground_truth
        objects, target = truth["objects"], truth["objects"][truth["target"]]
        assert clip.prompt.count(f"the {target['colour']} {target['shape']}.") == 1
        assert [(o["colour"], o["shape"]) for o in objects].count((target["colour"], target["shape"])) == 1
        assert truth["answers"] == list(ANSWERS[question]) and truth["answers"][truth["label"]] == clip.answer
        positions = np.asarray(target["positions"])  # [T, 2]
        if question == "direction":
            dx, dy = positions[-1] - positions[0]
            recomputed = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
            assert not target["bounces"] and abs(dx * dy) < 1e-9  # straight along one axis
        elif question == "quadrant":
            x, y = positions[-1]
            half = truth["frame_size"] / 2
            recomputed = ("top " if y < half else "bottom ") + ("left" if x < half else "right")
        else:
            recomputed = "yes" if target["marked"] else "no"
        assert clip.answer == recomputed, clip.seed
        labels.append(truth["label"])
    counts = np.bincount(labels, minlength=len(ANSWERS[question]))
    assert counts.min() > 0 and counts.max() < 2.5 * counts.min(), counts


@pytest.mark.parametrize("name", ["caption", "caption_many"])
def test_caption_describes_the_target_first(name):
    for clip in clips(name):
        truth = clip.ground_truth
        target = truth["objects"][truth["target"]]
        first = clip.caption.split(". ")[0]
        assert clip.prompt == "Describe the video." and clip.answer == clip.caption
        assert truth["label"] is None and truth["answers"] == []
        assert f"{target['colour']} {target['shape']}" in first
        assert ("with a dot" in first) == target["marked"]
        assert ("stays still" in first) == (target["motion"] == "static")
        assert all(edge in first for _, edge in target["bounces"])


def test_held_out_streams_never_share_a_clip():
    train = {sample["seed"] for sample in itertools.islice(synthetic_stream(seed=0), 200)}
    held_out = {sample["seed"] for sample in itertools.islice(synthetic_stream(seed=1), 200)}
    assert len(train) == len(held_out) == 200 and not train & held_out
    assert clip_seed(0, 2**32 - 1) < clip_seed(1, 0)  # the whole index space of one stream comes first
    with pytest.raises(ValueError, match="index"):
        clip_seed(0, 2**32)


def assert_same_samples(samples, expected):
    for sample, reference in zip(samples, expected, strict=True):
        assert sample["frames"].dtype == np.uint8 and np.array_equal(sample["frames"], reference["frames"])
        assert [sample[k] for k in ("prompt", "answer", "caption", "seed")] == [
            reference[k] for k in ("prompt", "answer", "caption", "seed")
        ]
        truth = sample["ground_truth"]
        assert (json.loads(truth) if isinstance(truth, str) else truth) == reference["ground_truth"]


def test_start_resumes_at_the_right_clip():
    config = CONFIGS["direction"]
    reference = list(itertools.islice(synthetic_stream(config, seed=3), 8))
    assert_same_samples(itertools.islice(synthetic_stream(config, seed=3, start=5), 3), reference[5:])
    assert_same_samples(itertools.islice(synthetic_dataset(config, seed=3, start=5), 3), reference[5:])


def test_dataset_yields_the_generators_samples_and_round_trips():
    config = CONFIGS["quadrant"]
    dataset = synthetic_dataset(config, seed=2)
    reference = list(itertools.islice(synthetic_stream(config, seed=2), 6))
    assert_same_samples(itertools.islice(dataset, 6), reference)
    # Through Arrow and back: the declared features hold the samples (the numpy formatter widens uint8 to int64).
    for sample, expected in zip(itertools.islice(dataset.with_format("numpy"), 2), reference[:2], strict=True):
        assert np.array_equal(sample["frames"], expected["frames"]) and json.loads(sample["ground_truth"])


def test_split_by_node_gives_ranks_disjoint_clips_and_resumes_per_rank():
    config = CONFIGS["caption"]
    dataset = synthetic_dataset(config, seed=0)
    ranks = [[s["seed"] for s in itertools.islice(split_dataset_by_node(dataset, r, 2), 10)] for r in range(2)]
    assert ranks[0] == list(range(10))  # rank 0 holds the first block, so it sees the unsplit stream's start
    assert len(set(ranks[0]) | set(ranks[1])) == 20
    resumed = split_dataset_by_node(synthetic_dataset(config, seed=0, start=4), 1, 2)
    assert [s["seed"] for s in itertools.islice(resumed, 6)] == ranks[1][4:]
    # A world size that does not divide the shards falls back to datasets' example striding: still disjoint.
    thirds = [{s["seed"] for s in itertools.islice(split_dataset_by_node(dataset, r, 3), 5)} for r in range(3)]
    assert len(set().union(*thirds)) == 15


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task": "detect"}, "task='detect' is not one of"),
        ({"colours": ("red", "teal")}, "colour='teal'"),
        ({"object_size": (0.05, 0.2)}, "at least 4 px"),
        ({"num_objects": (3, 5), "colours": ("red",), "shapes": ("square", "circle")}, "distinct colour\\+shape"),
        ({"speed": (0.0, 0.1)}, "must move"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticVideoConfig(**kwargs)
