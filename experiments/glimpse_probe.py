"""Do a model's answers rank hard glimpses by where they look? The question behind the glimpse policy
(docs/foveation_experiment.md, "Without labels"): REINFORCE over sampled glimpses can only learn to look at the
named object if a glimpse on it answers better than the glimpses the model draws itself.

For generated clutter clips with a given number of objects (a stream no run trains on), each video's answer loss is
measured four ways, all through the model's own fine pass with its planned queries: read softly as in evaluation;
with every frame's glimpse forced onto the patches the named object covers (the generator's ground truth: a
diagnostic, never a training signal); and as the mean and the best of `--draws` hard glimpses drawn from its maps
(`sampled_glimpses`, what the glimpse policy trains on). And where each pass's maps look (`where_maps_look`):
their share on the named object, how sharp they are, whether they sit on the same patches in every clip (a
place rather than a thing), and how much the planned and the static query's maps coincide. And whether the planned
queries carry the named colour at all (`named_colour_from_queries`: a softmax regression's held-out accuracy,
`token_probe.probe_accuracy`, on the queries averaged over frames; chance is `colour_chance`).

    python experiments/glimpse_probe.py --model outputs/clutter-emergent --objects 2
"""

import argparse
import itertools
import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from token_probe import probe_accuracy  # noqa: E402

from foveated_vlm import FoveatedVLMForConditionalGeneration, FoveatedVLMProcessor  # noqa: E402
from foveated_vlm.data.pipeline import build_dataset  # noqa: E402
from foveated_vlm.data.sample_counts import SAMPLE_COUNTS_KEY  # noqa: E402
from foveated_vlm.modeling_foveated import fixation_entropy, target_share  # noqa: E402
from foveated_vlm.training.data_collator import VideoTextCollator  # noqa: E402
from foveated_vlm.training.foveation_losses import sampled_glimpses, video_losses  # noqa: E402


def clutter_clips(objects: int, clips: int, seed: int, frame_size: int, num_frames: int) -> list:
    """`clips` quadrant questions about scenes of `objects` objects (1-3 from the curriculum's stages, else the full
    scene)."""
    options = dict(seed=seed, frame_size=frame_size, num_frames=num_frames, task="clutter", question="quadrant")
    if objects >= 4:
        return list(itertools.islice(build_dataset("clutter", **options), clips))
    staged = build_dataset("clutter", curriculum_clips=3 * clips, **options)  # a third each of 1, 2 and 3 objects
    return list(itertools.islice(staged, 3 * clips))[(objects - 1) * clips : objects * clips]


def where_maps_look(fine: torch.Tensor, coarse: torch.Tensor, named: torch.Tensor) -> dict:
    """Fixation maps of the two passes `[N, T, K, gh, gw]` and the named object's patches `[N, T, gh, gw]` ->
    for each pass, `on_named_*` (the maps' mean share on the named object), `entropy_*` (mean nats per map) and
    `place_entropy_*` (nats of the maps averaged over the N clips, frame by frame: near `entropy_*` when every clip's
    map sits on the same patches whatever they show; ln(gh*gw) when the maps go where the clips differ), and
    `overlap`, the mean Bhattacharyya coefficient of a clip's fine and coarse maps (1: the same map)."""
    stats = {}
    for name, maps in (("fine", fine), ("coarse", coarse)):
        stats[f"on_named_{name}"] = target_share(maps, named > 0).mean().item()
        stats[f"entropy_{name}"] = fixation_entropy(maps).mean().item()
        stats[f"place_entropy_{name}"] = fixation_entropy(maps.mean(0)).mean().item()  # [T, K] maps over clips
    stats["overlap"] = (fine * coarse).sqrt().flatten(-2).sum(-1).mean().item()
    return stats


@torch.no_grad()
def glimpse_probe(model, processor, samples, draws: int = 8, radius: int = 1, batch_size: int = 8) -> dict:
    """Mean answer loss per video: `soft`, `named` (glimpses on the named object), `draws` and `best_draw`; where
    the maps look (`where_maps_look`); and how well the named colour reads from the planned queries."""
    grid = model.config.frame_size // model.config.patch_size
    collator = VideoTextCollator(processor, None, fixation_grid=grid)
    model.eval()
    totals = {"soft": [], "named": [], "draws": [], "best_draw": []}
    maps = {"fine": [], "coarse": [], "named": []}
    queries = []
    for start in range(0, len(samples), batch_size):
        batch = collator(samples[start : start + batch_size])
        batch.pop(SAMPLE_COUNTS_KEY, None)
        batch.pop("target_latents", None)
        named = batch.pop("fixation_targets")  # [B, T, gh, gw]
        outputs = model(**batch, output_attentions=True)
        planned = outputs.queries  # [B, T, K, qd]
        on_named = named.unsqueeze(2).expand(*planned.shape[:3], *named.shape[-2:])  # every glimpse on the target
        totals["soft"].append(video_losses(model, batch, 1, planned))
        totals["named"].append(video_losses(model, batch, 1, planned, on_named))
        _, drawn = sampled_glimpses(model, batch, planned, outputs.fixations_fine, draws, radius)  # [S, B]
        totals["draws"].append(drawn.mean(0))
        totals["best_draw"].append(drawn.min(0).values)
        for name, value in (("fine", outputs.fixations_fine), ("coarse", outputs.fixations_coarse), ("named", named)):
            maps[name].append(value)
        queries.append(planned.mean((1, 2)))  # [B, qd]
    losses = {name: torch.cat(values).mean().item() for name, values in totals.items()}
    looks = where_maps_look(*(torch.cat(maps[name]) for name in ("fine", "coarse", "named")))
    colours = [named_colour(sample) for sample in samples]
    palette = sorted(set(colours))
    labels = torch.tensor([palette.index(colour) for colour in colours])
    with torch.enable_grad():  # the regression is fitted here
        readout = probe_accuracy(torch.cat(queries), labels)
    return {**losses, **looks, "named_colour_from_queries": readout, "colour_chance": 1 / len(palette)}


def named_colour(sample: dict) -> str:
    """The colour of the object a clutter clip's prompt names (its ground truth)."""
    truth = sample["ground_truth"]
    truth = json.loads(truth) if isinstance(truth, str) else truth
    return truth["objects"][truth["target"]]["colour"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved clutter model (train.py's output folder)")
    parser.add_argument("--objects", type=int, default=2, help="objects per scene: 1-3, or 4 for the full scene")
    parser.add_argument("--clips", type=int, default=120)
    parser.add_argument("--draws", type=int, default=8, help="hard glimpses drawn per video")
    parser.add_argument("--radius", type=int, default=1, help="a drawn glimpse reads the patches this near its centre")
    parser.add_argument("--seed", type=int, default=4242, help="the clip stream's seed (no run trains on it)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = FoveatedVLMForConditionalGeneration.from_pretrained(args.model)
    processor = FoveatedVLMProcessor.from_pretrained(args.model)
    frames = processor.video_processor.num_frames
    samples = clutter_clips(args.objects, args.clips, args.seed, model.config.frame_size, frames)
    result = {
        "objects": args.objects,
        "clips": len(samples),
        **glimpse_probe(model, processor, samples, args.draws, args.radius),
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
