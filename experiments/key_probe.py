"""Do a ViT's patch keys say which colour an object is? The question behind the label-free clutter runs
(docs/foveation_experiment.md, "Without labels"): a query can single out the named object only through the keys.

For generated clutter clips (a stream no run trains on), the keys of every layer at the patch under each object's
centre, in every frame, are classified by the object's colour with a nearest-centroid rule fitted on two thirds of
the clips and tested on the rest. Chance is one over the number of colours.

    python experiments/key_probe.py --vision_model outputs/clutter-emergent/vision_pretrained   # a run trained
        # with --vision_pretraining_steps 500 (the label-free masked-patch stage)
    python experiments/key_probe.py --fresh --vision_position_init_std 3.0   # a fresh ViT, as `clutter` draws it
"""

import argparse
import itertools
import json
import os
import sys

import torch
from transformers import AutoConfig, AutoModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from foveated_vlm.data.pipeline import build_dataset  # noqa: E402
from foveated_vlm.training.arguments import parse  # noqa: E402
from foveated_vlm.training.model_building import fresh_vision_config, init_position_embeddings  # noqa: E402
from foveated_vlm.video_processing_foveated import FoveatedVideoProcessor  # noqa: E402


def object_patches(samples, patch_size: int, grid: int):
    """`(frame, patch, colour id, clip)` for the patch under every object's centre in every frame of `samples`."""
    rows, colours = [], {}
    for clip, sample in enumerate(samples):
        truth = sample["ground_truth"]
        truth = json.loads(truth) if isinstance(truth, str) else truth
        frames = len(truth["objects"][0]["positions"])
        for obj in truth["objects"]:
            colour = colours.setdefault(obj["colour"], len(colours))
            for t, (x, y) in enumerate(obj["positions"]):
                rows.append((clip * frames + t, int(y // patch_size) * grid + int(x // patch_size), colour, clip))
    return torch.tensor(rows), len(colours)


def key_probe(vision, samples, frame_size: int, num_frames: int) -> dict:
    """Held-out nearest-centroid accuracy of the object's colour from each layer's patch keys, and chance."""
    processor = FoveatedVideoProcessor(size=frame_size, num_frames=num_frames)
    pixels = processor([s["frames"] for s in samples], return_tensors="pt")["pixel_values_videos"].flatten(0, 1)
    patch_size = vision.config.patch_size
    rows, num_colours = object_patches(samples, patch_size, frame_size // patch_size)
    keys = {}
    hooks = [
        layer.attention.k_proj.register_forward_hook(lambda module, args, out, index=i: keys.update({index: out}))
        for i, layer in enumerate(vision.encoder.layer)
    ]
    with torch.no_grad():
        vision(pixel_values=pixels)
    for hook in hooks:
        hook.remove()
    labels, fit = rows[:, 2], rows[:, 3] < (2 * len(samples)) // 3
    accuracy = []
    for index in sorted(keys):
        features = keys[index][rows[:, 0], 1 + rows[:, 1]]  # [objects x frames, D]: the CLS token is not a patch
        centroids = torch.stack([features[fit & (labels == c)].mean(0) for c in range(num_colours)])
        predicted = torch.cdist(features[~fit], centroids).argmin(-1)
        accuracy.append(round((predicted == labels[~fit]).float().mean().item(), 3))
    return {"accuracy_per_layer": accuracy, "chance": round(1 / num_colours, 3)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vision_model", help="a DINOv2 checkpoint (e.g. a run's vision_pretrained folder)")
    parser.add_argument("--fresh", action="store_true", help="a fresh ViT from the clutter-emergent preset's sizes")
    parser.add_argument("--vision_position_init_std", type=float, default=None)
    parser.add_argument("--clips", type=int, default=120)
    parser.add_argument("--seed", type=int, default=500, help="the clips' stream (no run trains on it)")
    args = parser.parse_args(argv)
    if bool(args.vision_model) == args.fresh:
        parser.error("give one of --vision_model DIR and --fresh")
    torch.manual_seed(0)
    if args.fresh:
        model_args, data_args, _, _ = parse(["--preset", "clutter-emergent"])
        vision = AutoModel.from_config(AutoConfig.for_model(**fresh_vision_config(model_args, data_args)))
        if args.vision_position_init_std is not None:
            init_position_embeddings(vision, args.vision_position_init_std)
    else:
        vision = AutoModel.from_pretrained(args.vision_model)
    size, frames = vision.config.image_size, 8
    stream = build_dataset("clutter", seed=args.seed, frame_size=size, num_frames=frames, question="quadrant")
    samples = list(itertools.islice(stream, args.clips))
    result = {**key_probe(vision.eval(), samples, size, frames), "clips": args.clips}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
