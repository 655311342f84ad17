"""Procedural synthetic video: the embedded offline default dataset and the scenes of the foveation experiment.

A clip is a few coloured shapes (square, circle, triangle, cross) moving over a dark background, drawn with numpy
from nothing but its seed, so `python train.py` needs no download and any clip can be regenerated exactly. Two
tasks:

* `caption`: "Describe the video." and a sentence per object ("A red circle moves left, bouncing off the left
  edge."), the main object first;
* `clutter`: several objects, each a distinct colour+shape pair; the prompt names one ("Track the red triangle.
  Which way does it move?") and the answer is something only that target shows: its direction of motion, the
  quadrant it ends in, or whether it carries a small dot. Labels are drawn uniformly, so chance is 1/|answers|,
  and every object moves along the same four directions, so only colour+shape single out the target;
* `global`: the control of the foveation experiment, where the only change is global: still objects, and the
  whole frame brightens, darkens or pans (wrapping around), so no place in it says more about the next frame
  than any other.

Geometry: the frame spans [0, W] in continuous pixel units, pixel i covering [i, i + 1) (its centre is i + 0.5).
An object of size s has half-extent r = s / 2 and its centre stays in [r, W - r], so it never leaves the frame.
Linear motion bounces off the edges; the bouncing position is the fold (a triangle wave) of the unbounded
position u0 + v·t, computed for all objects and frames at once. Objects are drawn in order with the target last,
so nothing occludes it: the pixel under its recorded centre always shows its colour (or its dot).

Streams are unbounded and deterministic: clip `index` of stream `seed` has the clip seed `seed << 32 | index`, so a
held-out stream (another `seed`) never repeats a training clip. `synthetic_dataset` wraps the stream as a
`datasets.IterableDataset` (datasets >= 4 has no loading scripts) whose shards are contiguous blocks of that index
space, which `split_dataset_by_node` and DataLoader workers hand out whole, hence disjointly.
"""

import json
from dataclasses import dataclass

import numpy as np
from datasets import Array4D, Features, IterableDataset, Value

__all__ = [
    "ANSWERS",
    "GLOBAL_CHANGES",
    "PALETTE",
    "SHAPES",
    "SyntheticClip",
    "SyntheticVideoConfig",
    "clip_seed",
    "generate_clip",
    "synthetic_dataset",
    "synthetic_features",
    "synthetic_stream",
]

SHAPES = ("square", "circle", "triangle", "cross")
PALETTE = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
    "magenta": (220, 50, 220),
    "cyan": (40, 220, 230),
    "white": (245, 245, 245),
    "orange": (250, 140, 20),
}
TASKS = ("caption", "clutter", "global")
BACKGROUNDS = ("plain", "noise")
ANSWERS = {
    "direction": ("right", "up", "left", "down"),  # label k is compass heading 2k (see COMPASS)
    "quadrant": ("top left", "top right", "bottom left", "bottom right"),
    "mark": ("yes", "no"),
}
PROMPTS = {
    "direction": "Track the {} {}. Which way does it move?",
    "quadrant": "Track the {} {}. Where does it end up?",
    "mark": "Look at the {} {}. Does it have a dot on it?",
}
CAPTION_PROMPT = "Describe the video."
GLOBAL_CHANGES = ("brighter", "darker", "left", "right", "up", "down")  # the `global` task: gain, or pan direction
_GAIN_RANGE = (0.3, 0.6)  # a global-brightness clip changes by this fraction of its level over the clip
# Headings counter-clockwise from "right"; image y grows downwards, so "up" is -y.
COMPASS = ("right", "up and to the right", "up", "up and to the left",
           "left", "down and to the left", "down", "down and to the right")  # fmt: skip
_S = np.sqrt(0.5)
# Unit vectors of COMPASS, written out so axis-aligned motion has exact zeros (cos(pi / 2) is not 0).
_UNIT = np.array([[1, 0], [_S, -_S], [0, -1], [-_S, -_S], [-1, 0], [-_S, _S], [0, 1], [_S, _S]])  # [8, 2]
_EDGES = (("left", "right"), ("top", "bottom"))  # (low, high) edge of the x and y axes
_BACKGROUND_LEVEL, _NOISE_LEVEL = 16, 32  # dark, so every palette colour stands out
_MARK_RGB = (0, 0, 0)
_MIN_OBJECT_PX = 4  # below this a triangle's centre pixel can miss the shape and shapes lose their form
_INDEX_BITS = 32  # clips per stream: 2**32, effectively unbounded


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {list(allowed)}")


@dataclass
class SyntheticVideoConfig:
    """What the generated clips look like. Sizes and speeds are fractions of `frame_size`, so a config means the
    same scene at 32 and at 256 px."""

    frame_size: int = 32  # H = W in pixels
    num_frames: int = 8  # T
    task: str = "caption"  # "caption": describe the objects; "clutter": answer about one named target; "global"
    question: str = "direction"  # clutter only: "direction" of motion, "quadrant" it ends in, or "mark" (a dot)
    num_objects: tuple[int, int] | None = None  # inclusive range; None: (1, 1) caption, (3, 4) quadrant, else (3, 5)
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(PALETTE)
    object_size: tuple[float, float] = (0.125, 0.25)  # side / diameter: 4-8 px at 32 px
    speed: tuple[float, float] = (0.03, 0.09)  # per frame: 1-3 px at 32 px
    static_prob: float = 0.2  # share of objects that stay still (a direction target always moves)
    mark_prob: float = 0.25  # share of objects with a small dark dot: a detail only a close look resolves
    background: str = "noise"  # "plain" dark, or dark with light noise that is static over the clip
    distinct_colours: bool = False  # every object its own colour, so the colour alone singles out the target

    def __post_init__(self):
        _check_choice("task", self.task, TASKS)
        _check_choice("question", self.question, tuple(ANSWERS))
        _check_choice("background", self.background, BACKGROUNDS)
        for shape in self.shapes:
            _check_choice("shape", shape, SHAPES)
        for colour in self.colours:
            _check_choice("colour", colour, tuple(PALETTE))
        # Lists come back from JSON; tuples keep the config hashable and printable as it was written.
        self.shapes, self.colours = tuple(self.shapes), tuple(self.colours)
        quadrants = self.task == "clutter" and self.question == "quadrant"
        if self.num_objects is None:
            self.num_objects = (1, 1) if self.task == "caption" else (3, 4) if quadrants else (3, 5)
        self.num_objects = tuple(self.num_objects)
        self.object_size, self.speed = tuple(self.object_size), tuple(self.speed)
        low, high = self.num_objects
        if not 1 <= low <= high:
            raise ValueError(f"num_objects={self.num_objects} must be an inclusive range (low, high) with 1 <= low")
        if quadrants and high > 4:
            raise ValueError(
                f"num_objects={self.num_objects}: a quadrant question places each object in a quadrant "
                "of its own, so at most 4"
            )
        if self.distinct_colours and high > len(self.colours):
            raise ValueError(
                f"num_objects up to {high} with distinct_colours needs as many colours; got {len(self.colours)}"
            )
        if high > len(self.shapes) * len(self.colours):
            raise ValueError(
                f"num_objects up to {high} needs as many distinct colour+shape pairs, so that a prompt names exactly "
                f"one object; {len(self.colours)} colours x {len(self.shapes)} shapes give fewer"
            )
        if self.num_frames < 2:
            raise ValueError(f"num_frames={self.num_frames} must be at least 2 for motion to exist")
        smallest, largest = self.object_size
        if not (_MIN_OBJECT_PX <= smallest * self.frame_size and smallest <= largest <= 0.5):
            raise ValueError(
                f"object_size={self.object_size} must be a range within [{_MIN_OBJECT_PX}/frame_size, 0.5]: "
                f"at least {_MIN_OBJECT_PX} px at frame_size={self.frame_size}, and no larger than a quadrant"
            )
        if not 0 < self.speed[0] <= self.speed[1] < 0.5:
            raise ValueError(f"speed={self.speed} must be a range within (0, 0.5): a direction target must move")
        for name in ("static_prob", "mark_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}={getattr(self, name)} must be a probability in [0, 1]")


@dataclass
class SyntheticClip:
    """One generated clip. `ground_truth` holds only JSON types:

    - `objects`: one dict per object in drawing order with `shape`, `colour`, `rgb`, `size` (px), `marked`,
      `motion` ("linear" or "static"), `velocity` (px per frame at frame 0, [vx, vy]), `positions` (centres in px,
      [T][2]) and `bounces` ([frame, edge] pairs: the object reflected off `edge` between frame-1 and frame);
    - `target`: index of the object the prompt names (the main object for captions); it is drawn last;
    - `task`, `question` (None for captions), `answers` (the possible answers, [] for captions) and `label` (the
      index of `answer` in `answers`, None for captions), `frame_size`, `num_frames`.
    """

    frames: np.ndarray  # [T, H, W, 3] uint8
    prompt: str
    answer: str  # the reply to `prompt`: the caption, or one of ground_truth["answers"]
    caption: str  # a description of every object, the target first (the caption task's answer)
    ground_truth: dict
    seed: int


def _fold(u, low, high):
    """Bouncing positions from unbounded linear positions `u`: a triangle wave between `low` and `high`."""
    span = high - low
    w = np.mod(u - low, 2 * span)
    return low + np.minimum(w, 2 * span - w)


def _shape_mask(shape, dx, dy, r):
    """Which pixels, at offsets (dx, dy) from the centre, a shape of half-extent r covers."""
    if shape == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "triangle":  # apex up, base down, centred on its bounding box
        return (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    # A 1-px-wide arm always covers a pixel centre, so small crosses keep both arms.
    arm = max(r / 3, 0.5)
    return ((np.abs(dx) <= r) & (np.abs(dy) <= arm)) | ((np.abs(dy) <= r) & (np.abs(dx) <= arm))


def _draw(frames, positions, size, shape, rgb, marked):
    """Paint one object into every frame at once, touching only a window around it instead of the whole frame."""
    num_frames, height, width, _ = frames.shape
    r = size / 2
    # floor(c - r) + ceil(2r) >= floor(c + r): the window holds every pixel centre in [c - r, c + r].
    window = int(np.ceil(size)) + 1
    corner = np.floor(positions - r).astype(np.int64)  # [T, 2] top-left pixel (x, y) of each frame's window
    cols = corner[:, :1] + np.arange(window)  # [T, S]
    rows = corner[:, 1:] + np.arange(window)  # [T, S]
    dx = (cols + 0.5 - positions[:, :1])[:, None, :]  # [T, 1, S]
    dy = (rows + 0.5 - positions[:, 1:])[:, :, None]  # [T, S, 1]
    # The window may overhang the far edge; those pixels lie outside the object, so clipping only aliases unused ones.
    flat = (np.arange(num_frames)[:, None, None] * height + np.minimum(rows, height - 1)[:, :, None]) * width
    flat = flat + np.minimum(cols, width - 1)[:, None, :]  # [T, S, S] index into frames viewed as [T*H*W, 3]
    pixels = frames.reshape(-1, 3)
    pixels[flat[_shape_mask(shape, dx, dy, r)]] = rgb
    if marked:  # r / 4 keeps the dot inside every shape; 0.5 keeps it at least one pixel
        dot = max(r / 4, 0.5)
        pixels[flat[(np.abs(dx) <= dot) & (np.abs(dy) <= dot)]] = _MARK_RGB


def _bounces(unfolded, low, high):
    """Per object, [frame, edge] for each reflection: crossing a multiple m of the span in unfolded coordinates is a
    bounce off the high edge for odd m and off the low edge for even m (a step crosses at most one: speed < span)."""
    q = np.floor((unfolded - low) / (high - low)).astype(np.int64)  # [N, T, 2] which span of the triangle wave
    m = np.maximum(q[:, 1:], q[:, :-1])  # [N, T-1, 2]
    bounces = [[] for _ in range(len(q))]
    for i, t, axis in np.argwhere(q[:, 1:] != q[:, :-1]):  # in frame order within each object
        bounces[i].append([int(t) + 1, _EDGES[axis][int(m[i, t, axis]) % 2]])
    return bounces


def _sentence(obj):
    """One caption sentence from an object's ground truth, so captions never disagree with it."""
    noun = f"{obj['colour']} {obj['shape']}" + (" with a dot" if obj["marked"] else "")
    article = "An" if noun[0] in "aeiou" else "A"
    if obj["motion"] == "static":
        return f"{article} {noun} stays still."
    vx, vy = obj["velocity"]
    heading = COMPASS[int(np.round(np.arctan2(-vy, vx) / (np.pi / 4))) % 8]
    edges = list(dict.fromkeys(edge for _, edge in obj["bounces"]))  # distinct, in the order first hit
    if not edges:
        return f"{article} {noun} moves {heading}."
    listed = edges[0] if len(edges) == 1 else ", ".join(edges[:-1]) + " and " + edges[-1]
    return f"{article} {noun} moves {heading}, bouncing off the {listed} edge{'s' if len(edges) > 1 else ''}."


def generate_clip(seed: int, config: SyntheticVideoConfig | None = None) -> SyntheticClip:
    """Draw the clip of `seed`: the same seed and config always give the same frames and texts."""
    config = config or SyntheticVideoConfig()
    rng = np.random.Generator(np.random.PCG64(seed))
    size_px, num_frames = config.frame_size, config.num_frames
    clutter = config.task == "clutter"

    n = int(rng.integers(config.num_objects[0], config.num_objects[1] + 1))
    # Distinct colour+shape pairs, so the target's pair names it alone; the last object is the target.
    if config.distinct_colours:
        colour_index = rng.choice(len(config.colours), size=n, replace=False)
        pairs = colour_index * len(config.shapes) + rng.integers(len(config.shapes), size=n)
    else:
        pairs = rng.choice(len(config.colours) * len(config.shapes), size=n, replace=False)
    colours = [config.colours[p // len(config.shapes)] for p in pairs]
    shapes = [config.shapes[p % len(config.shapes)] for p in pairs]
    sizes = rng.uniform(*config.object_size, n) * size_px  # [N]
    r = sizes[:, None] / 2  # [N, 1]
    static = (rng.random(n) < config.static_prob) | (config.task == "global")  # global: only the frame changes
    marked = rng.random(n) < config.mark_prob
    # Clutter objects all move along the four answer directions, so motion never singles out the target.
    heading = rng.integers(4, size=n) * 2 if clutter else rng.integers(8, size=n)  # [N] index into COMPASS
    speed = rng.uniform(*config.speed, n) * size_px  # [N]
    start = rng.uniform(r, size_px - r, (n, 2))  # [N, 2] unfolded start, inside the frame
    steps = num_frames - 1

    label = None
    if clutter:
        label = int(rng.integers(len(ANSWERS[config.question])))
        if config.question == "direction":
            # Straight motion without a bounce, so the heading is also the net displacement.
            static[-1] = False
            heading[-1] = 2 * label
            edge = r[-1, 0]
            speed[-1] = min(speed[-1], (size_px - 2 * edge) / steps)
            travel = speed[-1] * steps
            axis, forward = label % 2, label in (0, 3)  # right is +x, up -y, left -x, down +y
            bounds = (edge, size_px - edge - travel) if forward else (edge + travel, size_px - edge)
            start[-1, axis] = rng.uniform(*bounds)
        elif config.question == "quadrant":
            # Every object ends wholly inside a quadrant of its own, the target in the answer's: no quadrant holds
            # more objects than another, so only the named colour says which one is meant (with the distractors
            # anywhere, "the quadrant with the most objects in it" already guessed the answer about half the time).
            # Place each end, then run time backwards: a bounce is its own inverse, so unfolding from the end gives
            # a trajectory that lands there.
            half = size_px / 2
            others = rng.permutation([quadrant for quadrant in range(4) if quadrant != label])[: n - 1]
            for i, quadrant in enumerate([*others, label]):
                edge = r[i, 0]
                bounds = ((edge, half - edge), (half + edge, size_px - edge))
                end = np.array([rng.uniform(*bounds[quadrant % 2]), rng.uniform(*bounds[quadrant // 2])])
                start[i] = end - (0.0 if static[i] else speed[i] * _UNIT[heading[i]] * steps)
        else:
            marked[-1] = label == 0

    velocity = np.where(static[:, None], 0.0, speed[:, None] * _UNIT[heading])  # [N, 2] unfolded, px per frame
    unfolded = start[:, None, :] + velocity[:, None, :] * np.arange(num_frames)[None, :, None]  # [N, T, 2]
    low, high = r[:, :, None], size_px - r[:, :, None]  # [N, 1, 1]
    positions = _fold(unfolded, low, high)  # [N, T, 2]
    bounces = _bounces(unfolded, low, high)
    # Heading at frame 0 after folding: the unfolded start may lie on a descending slope of the triangle wave.
    descending = np.mod(start - r, 2 * (size_px - 2 * r)) >= size_px - 2 * r  # [N, 2]
    velocity0 = np.where(descending, -velocity, velocity)  # [N, 2]

    if config.background == "noise":
        # Static over the clip, so frame-to-frame change comes from the objects alone.
        background = _BACKGROUND_LEVEL + rng.integers(0, _NOISE_LEVEL, (size_px, size_px, 3), dtype=np.uint8)
    else:
        background = np.full((size_px, size_px, 3), _BACKGROUND_LEVEL, dtype=np.uint8)
    frames = np.repeat(background[None], num_frames, axis=0)  # [T, H, W, 3]

    objects = []
    for i in range(n):
        rgb = PALETTE[colours[i]]
        _draw(frames, positions[i], sizes[i], shapes[i], rgb, marked[i])
        objects.append({
            "shape": shapes[i], "colour": colours[i], "rgb": list(rgb), "size": float(sizes[i]),
            "marked": bool(marked[i]), "motion": "static" if static[i] else "linear",
            "velocity": velocity0[i].tolist(), "positions": positions[i].tolist(),
            "bounces": bounces[i],
        })  # fmt: skip

    target = objects[-1]
    caption = " ".join(_sentence(obj) for obj in [target, *objects[:-1]])
    change = None
    if config.task == "global":
        change = GLOBAL_CHANGES[int(rng.integers(len(GLOBAL_CHANGES)))]
        frames, shift = _global_change(frames, change, rng, config)
        for obj in objects:  # a pan carries every object with the frame
            obj["positions"] = np.mod(np.asarray(obj["positions"]) + shift, size_px).tolist()
        nouns = [f"{obj['colour']} {obj['shape']}" for obj in objects]
        listed = nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " and " + nouns[-1]
        caption = f"{_GLOBAL_SENTENCE[change]} It shows {listed}."
    answers = list(ANSWERS[config.question]) if clutter else []
    ground_truth = {
        "task": config.task, "question": config.question if clutter else None, "answers": answers,
        "label": label, "target": n - 1, "objects": objects, "global_change": change,
        "frame_size": size_px, "num_frames": num_frames,
    }  # fmt: skip
    if clutter:
        prompt, answer = PROMPTS[config.question].format(target["colour"], target["shape"]), answers[label]
    else:
        prompt, answer = CAPTION_PROMPT, caption
    return SyntheticClip(frames, prompt, answer, caption, ground_truth, seed)


_GLOBAL_SENTENCE = {
    "brighter": "The whole scene gets brighter.", "darker": "The whole scene gets darker.",
    "left": "The whole scene pans left.", "right": "The whole scene pans right.",
    "up": "The whole scene pans up.", "down": "The whole scene pans down.",
}  # fmt: skip


def _global_change(frames, change, rng, config):
    """Apply one global change to still `frames` [T, H, W, 3]: a brightness ramp, or a pan that wraps around.
    Returns the new frames and each frame's shift in px ([T, 2], (x, y); zero for brightness)."""
    steps = np.arange(config.num_frames)  # [T]
    shift = np.zeros((config.num_frames, 2))
    if change in ("brighter", "darker"):
        gain = rng.uniform(*_GAIN_RANGE) * (1 if change == "brighter" else -1)
        scale = 1 + gain * steps / (config.num_frames - 1)  # [T]
        return np.clip(frames * scale[:, None, None, None], 0, 255).astype(np.uint8), shift
    speed = max(1, round(rng.uniform(*config.speed) * config.frame_size))  # whole pixels: rolls stay exact
    direction = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[change]
    shift = steps[:, None] * speed * np.array(direction)  # [T, 2]
    # Roll every frame by its own shift at once: gather rows and columns from shifted index grids.
    rows = np.mod(np.arange(config.frame_size)[None, :] - shift[:, 1:].astype(np.int64), config.frame_size)  # [T, H]
    cols = np.mod(np.arange(config.frame_size)[None, :] - shift[:, :1].astype(np.int64), config.frame_size)  # [T, W]
    panned = frames[steps[:, None, None], rows[:, :, None], cols[:, None, :]]  # [T, H, W, 3]
    return panned, shift


def clip_seed(seed: int, index: int) -> int:
    """The seed of clip `index` of stream `seed`. Distinct (seed, index) pairs never share a clip seed."""
    if not (0 <= seed < 2**31 and 0 <= index < 2**_INDEX_BITS):  # 2**31 keeps the clip seed an int64
        raise ValueError(f"seed={seed} must be in [0, 2**31) and index={index} in [0, 2**{_INDEX_BITS})")
    return seed << _INDEX_BITS | index


def _sample(clip):
    # The id names the task too: the same clip seed draws a different scene under another task or question.
    truth = clip.ground_truth
    video_id = f"synthetic-{truth['task']}-{truth['question'] or 'describe'}-{clip.seed}"
    return {"frames": clip.frames, "prompt": clip.prompt, "answer": clip.answer, "caption": clip.caption,
            "ground_truth": truth, "seed": clip.seed, "video_id": video_id}  # fmt: skip


def synthetic_stream(config: SyntheticVideoConfig | None = None, seed: int = 0, start: int = 0):
    """Yield the clips of stream `seed` from index `start` on, as dicts with `frames` [T, H, W, 3] uint8, `prompt`,
    `answer`, `caption`, `ground_truth` (a dict) and `seed` (the clip seed). Clips are independent, so starting at
    `start` costs nothing: resume a run by passing the number of clips it consumed."""
    for index in range(start, 2**_INDEX_BITS):
        yield _sample(generate_clip(clip_seed(seed, index), config))


def synthetic_features(config: SyntheticVideoConfig | None = None) -> Features:
    """The `datasets` features of `synthetic_dataset`: ground truth travels as a JSON string."""
    config = config or SyntheticVideoConfig()
    shape = (config.num_frames, config.frame_size, config.frame_size, 3)
    text = Value("string")
    return Features({"frames": Array4D(shape, "uint8"), "prompt": text, "answer": text, "caption": text,
                     "ground_truth": text, "seed": Value("int64"), "video_id": text})  # fmt: skip


def _generate_shards(shards, shard_size, config, seed, start):
    # `datasets` iterates a worker's shards one after another, so each shard is a contiguous block of indices and
    # the unsplit dataset is exactly `synthetic_stream`; a block of 2**32 / num_shards clips never runs out.
    for shard in shards:
        for index in range(shard * shard_size + start, (shard + 1) * shard_size):
            sample = _sample(generate_clip(clip_seed(seed, index), config))
            yield sample | {"ground_truth": json.dumps(sample["ground_truth"])}


def synthetic_dataset(
    config: SyntheticVideoConfig | None = None, seed: int = 0, start: int = 0, num_shards: int = 64
) -> IterableDataset:
    """`synthetic_stream` as a `datasets.IterableDataset`, split into `num_shards` contiguous blocks of the clip index
    space. `split_dataset_by_node` (and DataLoader workers) give each rank whole blocks when `num_shards` is a
    multiple of the world size, so ranks see disjoint clips (otherwise `datasets` strides over examples, also
    disjoint). `start` skips that many clips in every block: unsplit, the dataset starts at clip `start`, and a rank
    that consumed `start` clips resumes where it stopped.

    Iterate it unformatted: frames come back as the generated uint8 arrays. `with_format("numpy"/"torch")` goes
    through Arrow and casts integers to int64, about 7x slower at 256 px; convert to float in the collator instead."""
    config = config or SyntheticVideoConfig()
    shard_size = 2**_INDEX_BITS // num_shards
    if not 0 <= start < shard_size:
        raise ValueError(f"start={start} must be in [0, {shard_size}), the size of a shard")
    shards = list(range(num_shards))  # a list in gen_kwargs is what datasets splits across nodes and workers
    kwargs = {"shards": shards, "shard_size": shard_size, "config": config, "seed": seed, "start": start}
    return IterableDataset.from_generator(_generate_shards, features=synthetic_features(config), gen_kwargs=kwargs)
