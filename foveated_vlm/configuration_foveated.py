"""Configuration of the foveated video vision-language model.

A `FoveatedVLMConfig` composes a vision config (DINOv3 ViT or DINOv2) and a text config (Llama / SmolLM2), in the
style of transformers' LLaVA and SmolVLM configs, and adds what the foveated model needs: the query width, how
many tokens each frame gives (K), the shape of the reconstruction target, the ids of the video special tokens and
the contract's three loss weights. The seeds' defaults are DINOv3 ViT-S/16 at 256 px, SmolLM2-135M-Instruct,
SD-VAE latents 4x32x32.
"""

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec
from transformers.utils import logging

__all__ = ["FoveatedVLMConfig", "SUPPORTED_VISION_MODEL_TYPES", "VIDEO_TOKENS", "add_video_tokens"]

logger = logging.get_logger(__name__)

# The foveated encoder re-runs the vision layers itself (to keep every layer's keys/values from the one patch
# pass), so it supports exactly the layer layouts it knows.
SUPPORTED_VISION_MODEL_TYPES = ("dinov3_vit", "dinov2", "dinov2_with_registers")

# SmolLM2-135M-Instruct has 49,152 tokens; the three video tokens are appended after them.
_SMOLLM2_VOCAB = 49152

# Fields of the foveation experiment that configs saved before the redesign hold, with their defaults then.
_TRAINING_OPTIONS = {
    "fine_queries": "predicted",
    "contrastive_loss_weight": 0.0,
    "entropy_margin_loss_weight": 0.0,
    "entropy_margin": 0.5,
    "fixation_loss_weight": 0.0,
}

# Text of the special tokens; `<video>` is the user-facing placeholder the processor expands into them.
VIDEO_TOKENS = {"video_start": "<video_start>", "frame": "<frame>", "video_end": "<video_end>"}


def add_video_tokens(tokenizer) -> dict[str, int]:
    """Add `<video_start>`, `<frame>` and `<video_end>` to `tokenizer` as special tokens (a no-op for those it has)
    and return their ids as `FoveatedVLMConfig` fields: `{"video_start_token_id": ..., "frame_token_id": ...,
    "video_end_token_id": ...}`. Resize the language model's embeddings to `len(tokenizer)` afterwards."""
    tokenizer.add_tokens(list(VIDEO_TOKENS.values()), special_tokens=True)
    return {f"{name}_token_id": tokenizer.convert_tokens_to_ids(token) for name, token in VIDEO_TOKENS.items()}


@strict
class FoveatedVLMConfig(PreTrainedConfig):
    r"""
    Configuration of [`FoveatedVLMForConditionalGeneration`].

    Args:
        vision_config (`dict` or `PreTrainedConfig`, *optional*):
            The vision encoder: a DINOv3 ViT (`dinov3_vit`) or DINOv2 (`dinov2`, `dinov2_with_registers`) config.
            Its `image_size` is the frame size; it must be a multiple of `patch_size`. Defaults to the shape of
            `facebook/dinov3-vits16-pretrain-lvd1689m` at 256 px.
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            The language model. Defaults to the shape of `HuggingFaceTB/SmolLM2-135M-Instruct` with room for the
            three video tokens.
        query_dim (`int`, *optional*):
            Width of the queries the language model writes. `None` means the vision width (proposal §2.2).
        tokens_per_frame (`int`, *optional*, defaults to 1):
            K, the number of query tokens (glimpses) per frame.
        target_channels (`int`, *optional*, defaults to 4):
            Channels of the reconstruction target (4 for SD-VAE latents, 3 for downsampled pixels).
        target_size (`int`, *optional*, defaults to 32):
            Side of the square reconstruction target; the frame size must be a multiple of it.
        predictor_channels (`int`, *optional*, defaults to 256):
            Width of the FiLM prediction head's convolutional trunk (the seeds used 256).
        video_start_token_id, frame_token_id, video_end_token_id (`int`):
            Ids, in the text vocabulary, of the tokens around and inside a video: `video_start`,
            `frame_token_id` x (T*K), `video_end`.
        reconstruction_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the next-frame reconstruction loss.
        caption_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the caption cross-entropy.
        coarse_loss_weight (`float`, *optional*, defaults to 1.0):
            lambda_coarse: weight of each coarse-pass loss relative to the fine pass (proposal §7).
        query_temperature (`float`, *optional*, defaults to 1.0):
            Temperature of the queries' attention in every ViT layer (patches are not affected). Below 1 it
            sharpens the fixations; a from-scratch ViT's small logits otherwise give near-uniform attention.
        query_top_k (`int`, *optional*, defaults to 0):
            Hard top-k attention: in every ViT layer each query attends only to its k highest-scoring patches (ties
            keep more), the CLS and register tokens and itself. 0 keeps soft attention over every patch.
        query_norm (`str`, *optional*, defaults to `"none"`):
            `"batch"` standardises each planned-query dimension over the batch during training (running statistics
            at inference), so what distinguishes one video's or prompt's query from another's is at unit scale
            instead of buried under the part all queries share (the query-collapse symptom). `"none"` leaves them.
        token_norm (`str`, *optional*, defaults to `"none"`):
            `"batch"` standardises each pass's frame tokens over the batch before the language model (running
            statistics at inference, a learned scale and shift). A fresh ViT's tokens differ from frame to frame by
            a small fraction of their size; standardised, that difference is what the language model sees, and a
            from-scratch model starts reading the video instead of learning the answers' text prior alone. Both
            batch norms are for training from scratch: in training their statistics mix every frame and clip of
            the batch (later frames included), so only evaluation (running statistics) is strictly causal, and the
            stream equals the parallel forward in eval mode.
        prompt_query (`bool`, *optional*, defaults to `False`):
            A second query head reads the coarse pass's `<video_start>` hidden state (the model's reading of the
            prompt, before any frame) and its query is added to every frame's planned query (the sum scaled by
            1/sqrt(2), which keeps it at std ~1 while the two parts are uncorrelated; with `query_norm="batch"` each
            part has its own norm, the prompt part's over the B videos of a batch, so training needs B >= 2). The
            per-frame head still plans from the frames seen; the prompt part carries what the prompt asks for to
            every frame, where a frame's own hidden state holds the prompt only diluted among the frames it read.
        glimpse_location (`bool`, *optional*, defaults to `False`):
            Each frame token's language-model embedding also gets a learned projection of where its glimpse looked:
            the centroid (x, y in [-1, 1]) of its fixation map (the last ViT layer's attention over patches). A
            token then says *where* without the patch values having to carry position, and the answer's gradient
            reaches the query through the centroid, which moves with the attention even while it is near flat
            (a glimpse's "where" beside its "what", as in recurrent attention models).
        static_query_base (`bool`, *optional*, defaults to `False`):
            The planned queries are the static queries plus what the heads plan. With `query_norm="batch"` the
            planned part has zero mean over the batch, so without a base no planned query can hold what every
            query should share (on the clutter task, "look at an object", which the static query learns at once);
            with it the heads learn only how a video's queries differ from the static ones.

    The foveation experiment's knobs (the random-query control, the contrastive and entropy-margin regularisers, the
    fixation loss) are not stored here: they change how a model is trained, not what a saved one computes, and are
    composed from outside (`foveated_vlm.training.foveation_losses`, the `fine_queries=` argument of the forwards).
    A config.json saved before they left still loads: they are dropped, with a warning naming those that were set.
    """

    model_type = "foveated_vlm"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="dinov3_vit",
            init_kwargs={"image_size": 256, "num_register_tokens": 4},  # ViT-S/16 as released, at 256 px
        ),
        "text_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="llama",
            init_kwargs={  # SmolLM2-135M-Instruct's shape
                "vocab_size": _SMOLLM2_VOCAB + 3,
                "hidden_size": 576,
                "intermediate_size": 1536,
                "num_hidden_layers": 30,
                "num_attention_heads": 9,
                "num_key_value_heads": 3,
                "max_position_embeddings": 8192,
                "rope_parameters": {"rope_type": "default", "rope_theta": 100000.0},
                "rms_norm_eps": 1e-5,
                "tie_word_embeddings": True,
                "bos_token_id": 1,
                "eos_token_id": 2,
                "pad_token_id": 2,
            },
        ),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    query_dim: int | None = None  # None: the vision width
    tokens_per_frame: int = 1  # K glimpses per frame
    target_channels: int = 4  # SD-VAE latent channels
    target_size: int = 32  # 256 px / 8 (SD-VAE downsampling)
    predictor_channels: int = 256  # FiLM head trunk width, as in the seeds
    video_start_token_id: int = _SMOLLM2_VOCAB
    frame_token_id: int = _SMOLLM2_VOCAB + 1
    video_end_token_id: int = _SMOLLM2_VOCAB + 2
    reconstruction_loss_weight: float = 1.0
    caption_loss_weight: float = 1.0
    coarse_loss_weight: float = 1.0  # lambda_coarse
    query_temperature: float = 1.0  # divides the queries' attention logits in the ViT; < 1 sharpens where they look
    query_top_k: int = 0  # 0: soft attention over every cached token
    query_norm: str = "none"  # "batch": standardise planned queries over the batch (running statistics at inference)
    token_norm: str = "none"  # "batch": standardise each pass's frame tokens over the batch
    prompt_query: bool = False  # add a query planned from the <video_start> hidden state to every frame's query
    static_query_base: bool = False  # planned queries = the static queries + what the heads plan (a shared base)
    glimpse_location: bool = False  # each frame token also says where its glimpse looked (its fixation's centroid)
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        _drop_training_options(kwargs)
        super().__post_init__(**kwargs)
        if self.query_dim is None:
            self.query_dim = self.vision_config.hidden_size
        # The language model's head shares its input embeddings exactly when the text model says so.
        self.tie_word_embeddings = bool(getattr(self.text_config, "tie_word_embeddings", False))
        self.validate_foveated()

    # ----------------------------------------------------------------------------------------------- validation
    def validate_foveated(self):
        """Raise `ValueError` naming the field, its value and what is allowed."""
        vision, text = self.vision_config, self.text_config
        if vision.model_type not in SUPPORTED_VISION_MODEL_TYPES:
            raise ValueError(
                f"vision_config.model_type={vision.model_type!r} is not supported; "
                f"expected one of {SUPPORTED_VISION_MODEL_TYPES}"
            )
        for name in ("query_dim", "tokens_per_frame", "target_channels", "target_size", "predictor_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} is invalid; expected a positive integer")
        if self.predictor_channels % 4:
            raise ValueError(
                f"predictor_channels={self.predictor_channels} is invalid; expected a multiple of 4 "
                "(the trunk widens C -> c/4 -> c/2 -> c)"
            )
        for name in (
            "reconstruction_loss_weight",
            "caption_loss_weight",
            "coarse_loss_weight",
        ):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"{name}={value!r} is invalid; expected a number >= 0")
        if not self.query_temperature > 0:
            raise ValueError(f"query_temperature={self.query_temperature!r} is invalid; expected a number > 0")
        if not isinstance(self.query_top_k, int) or self.query_top_k < 0:
            raise ValueError(f"query_top_k={self.query_top_k!r} is invalid; expected an integer >= 0 (0: off)")
        for name, allowed in (("query_norm", ("none", "batch")), ("token_norm", ("none", "batch"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid; expected one of {list(allowed)}")

        image_size, patch_size = (
            _square(vision.image_size, "vision_config.image_size"),
            _square(vision.patch_size, "vision_config.patch_size"),
        )
        if image_size % patch_size:
            raise ValueError(
                f"vision_config.image_size={image_size} is not a multiple of vision_config.patch_size={patch_size}; "
                f"expected a frame size such as {image_size - image_size % patch_size} or "
                f"{image_size - image_size % patch_size + patch_size}"
            )
        if image_size % self.target_size:
            raise ValueError(
                f"target_size={self.target_size} does not divide the frame size vision_config.image_size="
                f"{image_size}; expected a divisor (the SD-VAE gives frame_size / 8)"
            )

        ids = {
            "video_start_token_id": self.video_start_token_id,
            "frame_token_id": self.frame_token_id,
            "video_end_token_id": self.video_end_token_id,
        }
        for name, value in ids.items():
            if not isinstance(value, int) or not 0 <= value < text.vocab_size:
                raise ValueError(
                    f"{name}={value!r} is not a token id of the text vocabulary; "
                    f"expected an integer in [0, {text.vocab_size})"
                )
        if len(set(ids.values())) != 3:
            raise ValueError(f"the video token ids must be distinct; got {ids}")

    @property
    def frame_size(self) -> int:
        """Side of the square frames the vision encoder reads."""
        return _square(self.vision_config.image_size, "vision_config.image_size")

    @property
    def patch_size(self) -> int:
        return _square(self.vision_config.patch_size, "vision_config.patch_size")


def _drop_training_options(kwargs: dict) -> None:
    """Remove from `kwargs` the experiment's knobs that configs saved before the redesign still hold, warning about
    those that were not at their old defaults (the saved model computes the same without them)."""
    dropped = {name: kwargs.pop(name) for name in list(kwargs) if name in _TRAINING_OPTIONS}
    changed = {name: value for name, value in dropped.items() if value != _TRAINING_OPTIONS[name]}
    if changed:
        settings = ", ".join(f"{name}={value!r}" for name, value in changed.items())
        logger.warning(
            f"FoveatedVLMConfig ignores {settings}: these are training options now, not part of the saved model "
            "(see foveated_vlm.training.foveation_losses and train.py's foveation flags); the model plans its queries"
        )


def _square(value, name: str) -> int:
    """Sizes may be an int or an (h, w) pair; the foveated model uses square frames and patches."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"{name}={value!r} is invalid; expected a square size (an int or [n, n])")
        value = value[0]
    return int(value)
