"""From samples of any source to model-ready batches.

A sample is a dict with `frames` (anything `FoveatedVideoProcessor` reads: a `[T, H, W, 3]` uint8 array, a path,
bytes, a URL), a `prompt` and, when captions are trained, an `answer`. `VideoTextCollator` renders each prompt with
the processor's chat template (a user turn holding the prompt, then the video: see `chat_prompt`), runs the
processor (frames, tokens, caption labels) and the target encoder, and returns exactly what
`FoveatedVLMForConditionalGeneration.forward` takes. Use it as the `data_collator` of a `Trainer`, with
`remove_unused_columns=False` so the Trainer keeps the raw columns for it.
"""

import torch

__all__ = ["VideoTextCollator", "chat_prompt"]


def chat_prompt(processor, prompt: str) -> str:
    """The chat-formatted user turn, prompt then video, ending with the assistant's turn (what generation sees).

    The prompt comes first because the language model is causal: the hidden states that plan where to look in each
    frame can only read text that precedes the video. With the video first, "Track the red triangle" would arrive
    after every query was chosen, and no query could single out the target.
    """
    messages = [{"role": "user", "content": [{"type": "text", "text": prompt}, {"type": "video"}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


class VideoTextCollator:
    """Samples -> `input_ids`, `attention_mask`, `pixel_values_videos`, `labels`, `target_latents`.

    Args:
        processor: a `FoveatedVLMProcessor`.
        target_encoder: a target encoder (`foveated_vlm.build_target_encoder`) or None for no reconstruction.
        train_captions: supervise the samples' `answer` text (captions, answers) with `labels`.
    """

    def __init__(self, processor, target_encoder=None, train_captions: bool = True):
        self.processor = processor
        self.target_encoder = target_encoder
        self.train_captions = train_captions

    def prompt_text(self, prompt: str) -> str:
        return chat_prompt(self.processor, prompt)

    def __call__(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.processor(
            text=[self.prompt_text(sample["prompt"]) for sample in samples],
            videos=[sample["frames"] for sample in samples],
            answers=[sample["answer"] for sample in samples] if self.train_captions else None,
            return_target_frames=self.target_encoder is not None,
        )
        batch = dict(batch)
        if self.target_encoder is not None:
            with torch.no_grad():
                batch["target_latents"] = self.target_encoder.encode(batch.pop("target_frames"))  # [B, T, C, h, w]
        return batch
