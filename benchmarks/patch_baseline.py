"""A LLaVA-style patch-token baseline built from the foveated model's own vision model and language model.

Every frame contributes all its patch tokens (256 for ViT-S/16 at 256 px) to the language-model sequence, each
projected by one Linear to the language-model width; the sequence is `[text, <video_start>, T x 256 patch tokens,
<video_end>, caption]`. Next-frame prediction reads the hidden state at `<video_start>` (frame 0) and after the last
patch token of each frame, through the same FiLM head, and the caption loss is the foveated model's. Only the
benchmarks use it: it is what the foveated design is measured against.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel

from foveated_vlm import FoveatedVLMConfig, FoveatedVLMForConditionalGeneration
from foveated_vlm.predictor_foveated import LatentPredictor

__all__ = ["PatchTokenVLM"]


class PatchTokenVLM(nn.Module):
    """ViT patch tokens -> Linear -> language model; FiLM next-frame prediction and caption loss."""

    # The foveated model's losses read only `lm_head`, `predictor` and `initial_latent`, which this model has too.
    predict_next_latents = FoveatedVLMForConditionalGeneration.predict_next_latents
    caption_loss = FoveatedVLMForConditionalGeneration.caption_loss

    def __init__(self, config: FoveatedVLMConfig):
        super().__init__()
        text_width = config.text_config.hidden_size
        self.config = config
        self.vision_model = AutoModel.from_config(config.vision_config)
        self.num_prefix_tokens = 1 + int(getattr(config.vision_config, "num_register_tokens", 0) or 0)
        self.vision_to_text = nn.Linear(config.vision_config.hidden_size, text_width)
        self.language_model = AutoModel.from_config(config.text_config)
        self.lm_head = nn.Linear(text_width, config.text_config.vocab_size, bias=False)
        self.lm_head.weight = self.language_model.get_input_embeddings().weight  # tied, as in the foveated model
        self.predictor = LatentPredictor(text_width, config.target_channels, config.predictor_channels)
        self.initial_latent = nn.Parameter(torch.zeros(config.target_channels, config.target_size, config.target_size))

    def patches_per_frame(self) -> int:
        return (self.config.frame_size // self.config.patch_size) ** 2

    def forward(self, input_ids, pixel_values_videos, target_latents, labels) -> torch.Tensor:
        """The weighted reconstruction + caption loss of one batch.

        Args:
            input_ids: `[B, L]` with `<video_start>`, `frame_token_id` x (T * patches_per_frame), `<video_end>`.
            pixel_values_videos: `[B, T, 3, H, W]`. target_latents: `[B, T, C, h, w]`. labels: `[B, L]`.
        """
        config = self.config
        batch, frames = pixel_values_videos.shape[:2]
        patches = self.vision_model(pixel_values_videos.flatten(0, 1)).last_hidden_state  # [B*T, S, D_vision]
        patches = patches[:, self.num_prefix_tokens :]  # [B*T, P, D_vision]
        frame_embeds = self.vision_to_text(patches).reshape(batch, -1, config.text_config.hidden_size)  # [B, T*P, D]

        embeds = self.language_model.get_input_embeddings()(input_ids)  # [B, L, D]
        frame_mask = (input_ids == config.frame_token_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(frame_mask, frame_embeds)
        hidden = self.language_model(inputs_embeds=embeds).last_hidden_state  # [B, L, D]

        # The state that predicts target t: <video_start> for t = 0, else the last patch token of frame t-1.
        start = (input_ids == config.video_start_token_id).int().argmax(dim=1)  # [B]
        positions = start[:, None] + torch.arange(frames, device=input_ids.device) * self.patches_per_frame()
        plan_hidden = hidden.gather(1, positions[..., None].expand(-1, -1, hidden.shape[-1]))  # [B, T, D]
        predicted = self.predict_next_latents(plan_hidden, target_latents)  # [B, T, C, h, w]
        reconstruction = F.mse_loss(predicted.float(), target_latents.float())
        caption = self.caption_loss(hidden, labels)
        return config.reconstruction_loss_weight * reconstruction + config.caption_loss_weight * caption
