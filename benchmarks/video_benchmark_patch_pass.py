"""Time per video of likelihood scoring on a 4-option, 3-question video (Video-MME's shape): the shared patch pass
(`video_benchmark_scoring.score_choices` with one `encode_video` per video) against one full forward
per option (what `evaluation._score_choices` does: every option re-encodes the video). Not a test.

    python benchmarks/video_benchmark_patch_pass.py [--full] [--frames 8] [--repeats 3]

`--full` builds the reference shapes (DINOv3 ViT-S/16 at 256 px + SmolLM2-135M, random weights); the default is a
small model (hidden 192, 4 layers) so the script runs in seconds on a CPU.
"""

import argparse
import time

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AddedToken, PreTrainedTokenizerFast

from foveated_vlm import (
    FoveatedVideoProcessor,
    FoveatedVLMConfig,
    FoveatedVLMForConditionalGeneration,
    FoveatedVLMProcessor,
)
from foveated_vlm.evaluation.video_benchmark_scoring import encode_video, score_choices
from foveated_vlm.evaluation.video_benchmarks import BenchmarkItem, benchmark_prompt

LETTERS = ["A", "B", "C", "D"]


def build(full: bool, frames: int):
    backend = Tokenizer(models.WordLevel({"<unk>": 0, "<|im_start|>": 1, "<|im_end|>": 2}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<|im_start|>", eos_token="<|im_end|>"
    )
    tokenizer.add_tokens([AddedToken(letter, single_word=True) for letter in LETTERS])
    size = 256 if full else 64
    processor = FoveatedVLMProcessor(FoveatedVideoProcessor(size=size, num_frames=frames), tokenizer)
    vision = {"model_type": "dinov3_vit", "image_size": size, "patch_size": 16, "num_register_tokens": 4}
    vision.update(
        {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "intermediate_size": 1536}
        if full
        else {"hidden_size": 192, "num_hidden_layers": 4, "num_attention_heads": 3, "intermediate_size": 768}
    )
    text = {"model_type": "llama", "vocab_size": len(tokenizer), "max_position_embeddings": 2048}
    text.update(
        {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3}
        if full
        else {"hidden_size": 192, "num_hidden_layers": 4, "num_attention_heads": 3, "num_key_value_heads": 1}
    )
    text["intermediate_size"] = 1536 if full else 512
    ids = {f"{name}_token_id": getattr(processor, f"{name}_token_id") for name in ("video_start", "frame", "video_end")}
    config = FoveatedVLMConfig(
        vision_config=vision, text_config=text, query_dim=64, target_channels=3, target_size=8, **ids
    )
    return FoveatedVLMForConditionalGeneration(config).eval(), processor


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, processor = build(args.full, args.frames)
    size = processor.video_processor.frame_size
    frames = torch.randn(args.frames, 3, size, size)
    items = [BenchmarkItem("videomme", "clip.mp4", f"Question {i}?", ["a", "b", "c", "d"], "A") for i in range(3)]
    prompts = [benchmark_prompt(processor, item) for item in items]
    calls = []
    encode = model.foveated_encoder.encode_patches
    model.foveated_encoder.encode_patches = lambda *a, **k: calls.append(1) or encode(*a, **k)

    def shared():  # one patch pass for the video; all questions, options and both passes read it
        cache = encode_video(model, frames)
        for prompt in prompts:
            score_choices(model, processor, frames, prompt, LETTERS, vision_cache=cache)

    def per_option():  # one full forward per option, each encoding the video again
        for prompt in prompts:
            for letter in LETTERS:
                score_choices(model, processor, frames, prompt, [letter])

    runs = {"shared patch pass": shared, "full forward per option": per_option}
    best, passes = dict.fromkeys(runs, float("inf")), {}
    shared()  # warm-up
    for _ in range(args.repeats):  # alternated, best of each: the machine is shared, and load comes and goes
        for name, run in runs.items():
            calls.clear()
            start = time.perf_counter()
            run()
            best[name], passes[name] = min(best[name], time.perf_counter() - start), len(calls)
    for name in runs:
        print(f"{name:24s} {best[name]:.3f} s per video ({passes[name]} patch passes per video)")


if __name__ == "__main__":
    with torch.no_grad():
        main()
