"""Is the answer in the visual tokens at all? A linear probe on the last frame's tokens of clutter clips.

    python experiments/token_probe.py --preset clutter                     # a fresh model, as training starts
    python experiments/token_probe.py --model outputs/clutter              # a trained one
    python experiments/token_probe.py --preset clutter --num_objects 1     # scenes of one object
    python experiments/token_probe.py --preset clutter --query_temperature 0.1   # any train.py flag: a fresh variant

For clips of the `clutter` scene with the `quadrant` question, it takes the last frame's vision tokens of both passes
(coarse: the static query; fine: the queries the model plans after reading the prompt), fits a softmax regression
from them to the target's final quadrant on two thirds of the clips and reports its accuracy on the rest (chance
25 %). The same probe on the frame's raw pixels is the reference: it shows the answer is linearly there to be read.
A token that probes at chance carries nothing a language model could learn to answer from, however long it trains.
"""

import argparse
import json

import torch
import torch.nn.functional as F

from foveated_vlm import FoveatedVLMForConditionalGeneration, FoveatedVLMProcessor, VideoTextCollator
from foveated_vlm.data.pipeline import clutter_scene
from foveated_vlm.data.synthetic import SyntheticVideoConfig, synthetic_dataset
from foveated_vlm.training.arguments import parse
from foveated_vlm.training.model_building import build_model_and_processor


def load(args, train_flags: list[str]):
    """The model and processor to probe: a checkpoint, or a fresh model built the way `train.py --preset` (and
    any further train.py flags) builds it."""
    if args.model:
        model = FoveatedVLMForConditionalGeneration.from_pretrained(args.model)
        return model, FoveatedVLMProcessor.from_pretrained(args.model)
    flags = ["--preset", args.preset, "--output_dir", "unused", *train_flags]  # parsed as train.py parses them
    model_args, data_args, *_, training_args = parse(flags)  # the experiment's loss flags do not shape a model
    torch.manual_seed(training_args.seed)
    return build_model_and_processor(model_args, data_args)


def last_frame_features(model, processor, samples, batch_size: int = 32) -> dict[str, torch.Tensor]:
    """`{coarse, fine, pixels}`: each `[N, features]`, from the last frame of every sample."""
    collate = VideoTextCollator(processor, train_captions=False)
    features = {"coarse": [], "fine": [], "pixels": []}
    for start in range(0, len(samples), batch_size):
        batch = collate(samples[start : start + batch_size])
        with torch.no_grad():
            out = model.model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                pixel_values_videos=batch["pixel_values_videos"],
            )
        per_frame = model.config.tokens_per_frame
        features["coarse"].append(out.vision_tokens_coarse[:, -per_frame:].flatten(1))  # [B, K * D]
        features["fine"].append(out.vision_tokens_fine[:, -per_frame:].flatten(1))
        features["pixels"].append(batch["pixel_values_videos"][:, -1].flatten(1))  # [B, 3 * H * W]
    return {name: torch.cat(parts) for name, parts in features.items()}


def probe_accuracy(features: torch.Tensor, labels: torch.Tensor, steps: int = 500) -> float:
    """Held-out accuracy of a softmax regression fitted on the first two thirds (features standardised on them)."""
    split = 2 * len(labels) // 3
    mean, std = features[:split].mean(0), features[:split].std(0) + 1e-6
    x = (features - mean) / std
    weight = torch.zeros(x.shape[1], int(labels.max()) + 1, requires_grad=True)
    bias = torch.zeros(weight.shape[1], requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(x[:split] @ weight + bias, labels[:split]) + 1e-3 * weight.pow(2).sum()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return ((x[split:] @ weight + bias).argmax(1) == labels[split:]).float().mean().item()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a trained checkpoint directory")
    source.add_argument("--preset", help="a fresh model as train.py --preset builds it")
    parser.add_argument("--num_objects", type=int, default=None, help="objects per scene (default: the clutter scene)")
    parser.add_argument("--clips", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=1000, help="stream of clips (held out from training)")
    args, train_flags = parser.parse_known_args(argv)
    if train_flags and not args.preset:
        parser.error(f"{' '.join(train_flags)}: train.py flags shape a fresh model (--preset), not a checkpoint")

    torch.manual_seed(0)
    model, processor = load(args, train_flags)
    model.eval()
    frames, size = processor.video_processor.num_frames, processor.video_processor.frame_size
    layout = clutter_scene("quadrant")
    if args.num_objects:
        layout = {**layout, "num_objects": (args.num_objects, args.num_objects)}
    scene = SyntheticVideoConfig(frame_size=size, num_frames=frames, task="clutter", question="quadrant", **layout)
    samples = list(synthetic_dataset(scene, seed=args.seed).take(args.clips))
    labels = torch.tensor([json.loads(sample["ground_truth"])["label"] for sample in samples])
    features = last_frame_features(model, processor, samples)
    result = {"num_objects": list(scene.num_objects), "clips": len(samples)}
    result.update({f"probe_accuracy_{name}": probe_accuracy(value, labels) for name, value in features.items()})
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
