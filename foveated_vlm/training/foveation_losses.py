"""The foveation experiment's training terms, composed around the model from outside.

The core model computes what a saved model computes: its contract loss (reconstruction and caption, both passes).
What only the experiment turns lives here and never in a saved config: the seeds' two regularisers, the supervised
fixation loss with its schedule, and the random-query control (the fine pass reads every frame with fresh std-1
queries instead of the planned ones, so any fine/coarse gap it shows is not from choosing). `FoveatedTrainer`
takes a `FoveationLosses` and adds its terms to the model's loss; train.py builds it from its foveation flags.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..modeling_foveated import fixation_entropy, target_share

__all__ = [
    "FINE_QUERIES",
    "FoveationLosses",
    "contrastive_loss",
    "entropy_margin_loss",
    "fixation_loss",
    "random_fine_queries",
]

FINE_QUERIES = ("predicted", "random")  # what the fine pass reads with: the planned queries, or the control's draws


def contrastive_loss(vision_tokens_fine: torch.Tensor, vision_tokens_coarse: torch.Tensor) -> torch.Tensor:
    """Mean over videos of the cosine similarity of the two passes' vision tokens `[B, T*K, D_vision]`, flattened
    per video (before any projection or norm a bias could game): minimised, it pushes the passes to read different
    things."""
    fine, coarse = vision_tokens_fine.flatten(1), vision_tokens_coarse.flatten(1)  # [B, T*K*D_vision]
    return F.cosine_similarity(fine.float(), coarse.float(), dim=-1).mean()


def entropy_margin_loss(fixations_fine: torch.Tensor, fixations_coarse: torch.Tensor, margin: float) -> torch.Tensor:
    """`relu(H_fine - H_coarse + margin)`, H the mean fixation entropy (nats) of each pass's maps `[B, T, K, gh, gw]`.

    The coarse entropy is the reference (detached), so the term sharpens fine fixations instead of blurring coarse
    ones."""
    entropy_fine = fixation_entropy(fixations_fine).mean()
    entropy_coarse = fixation_entropy(fixations_coarse).mean().detach()
    return F.relu(entropy_fine - entropy_coarse + margin)


def fixation_loss(fixations: torch.Tensor, fixation_targets: torch.Tensor) -> torch.Tensor:
    """Mean over videos, frames and glimpses of `-log(share of the map on the target patches)`.

    fixations: `[B, T, K, gh, gw]` (each map sums to 1); fixation_targets: `[B, T, gh, gw]`, nonzero on the patches
    to look at. 0 when every map lies wholly on its targets; ln(gh*gw / target patches) when uniform.
    """
    return -target_share(fixations, fixation_targets).clamp_min(1e-6).log().mean()


def random_fine_queries(config, pixel_values_videos: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Fresh std-1 queries `[B, T, K, query_dim]` for the videos `[B, T, 3, H, W]`: the random-query control's
    `fine_queries=` (std 1, like the static queries and the planned ones)."""
    batch, frames = pixel_values_videos.shape[:2]
    shape = (batch, frames, config.tokens_per_frame, config.query_dim)
    return torch.randn(shape, device=pixel_values_videos.device, dtype=dtype or pixel_values_videos.dtype)


@dataclass
class FoveationLosses:
    """The experiment's knobs (train.py's `--fine_queries`, `--contrastive_loss_weight`, ... flags).

    contrastive_loss_weight / entropy_margin_loss_weight: weights of the seeds' regularisers (`contrastive_loss`,
    `entropy_margin_loss` with `entropy_margin` nats). fixation_loss_weight: weight of `fixation_loss` on batches
    that carry `fixation_targets` (generated clutter clips), a supervised start for the planned queries, which
    otherwise get no signal to single out the named object; training only. fixation_loss_steps: supervise for that
    many optimizer steps, then release the queries; 0: throughout. fine_queries: "random" is the control.
    """

    fine_queries: str = field(default="predicted", metadata={"help": "'random': the random-query control"})
    contrastive_loss_weight: float = 0.0
    entropy_margin_loss_weight: float = 0.0
    entropy_margin: float = field(default=0.5, metadata={"help": "nats"})
    fixation_loss_weight: float = field(
        default=0.0, metadata={"help": "clutter: supervise fine fixations with where the prompted object is"}
    )
    fixation_loss_steps: int = field(
        default=0, metadata={"help": "end the fixation loss after this many steps (queries released); 0: never"}
    )

    def __post_init__(self):
        # Messages name the train.py flags: this dataclass is their argument group.
        if self.fine_queries not in FINE_QUERIES:
            raise ValueError(f"--fine_queries {self.fine_queries!r} is invalid; expected one of {list(FINE_QUERIES)}")
        for name in ("contrastive_loss_weight", "entropy_margin_loss_weight", "fixation_loss_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"--{name} {getattr(self, name)!r} is invalid; expected a number >= 0")
        if not isinstance(self.fixation_loss_steps, int) or self.fixation_loss_steps < 0:
            raise ValueError(f"--fixation_loss_steps {self.fixation_loss_steps!r} must be >= 0 (0: never stop)")

    @property
    def random_queries(self) -> bool:
        return self.fine_queries == "random"

    def supervises_fixations(self, step: int) -> bool:
        """Whether the fixation loss is on at optimizer step `step` (it is released after `fixation_loss_steps`)."""
        released = self.fixation_loss_steps and step >= self.fixation_loss_steps
        return self.fixation_loss_weight > 0 and not released

    def fine_queries_for(self, config, pixel_values_videos: torch.Tensor | None, dtype=None) -> torch.Tensor | None:
        """The `fine_queries=` for a forward over these videos: fresh draws for the control, else None (planned)."""
        if not self.random_queries or pixel_values_videos is None:
            return None
        return random_fine_queries(config, pixel_values_videos, dtype)

    def terms(self, outputs, fixation_targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The terms that are on, by the name they are logged under, from a forward's outputs (which need the
        fixations, `output_attentions=True`, for the entropy margin and the fixation loss). `fixation_targets`
        `[B, T, gh, gw]`: pass them only on the steps the fixation loss supervises."""
        terms = {}
        if self.contrastive_loss_weight > 0 and outputs.vision_tokens_fine is not None:
            terms["contrastive_loss"] = contrastive_loss(outputs.vision_tokens_fine, outputs.vision_tokens_coarse)
        if self.entropy_margin_loss_weight > 0 and outputs.fixations_fine is not None:
            terms["entropy_margin_loss"] = entropy_margin_loss(
                outputs.fixations_fine, outputs.fixations_coarse, self.entropy_margin
            )
        if self.fixation_loss_weight > 0 and fixation_targets is not None:
            if outputs.fixations_fine is None:
                raise ValueError("the fixation loss reads the fine pass's fixations: pass output_attentions=True")
            expected = tuple(outputs.fixations_fine.shape[:2] + outputs.fixations_fine.shape[-2:])
            if tuple(fixation_targets.shape) != expected:
                raise ValueError(
                    f"fixation_targets must have shape [B, T, gh, gw] = {list(expected)} (the patch grid of "
                    f"pixel_values_videos); got {list(fixation_targets.shape)}"
                )
            terms["fixation_loss"] = fixation_loss(outputs.fixations_fine, fixation_targets)
        return terms

    def weighted(self, terms: dict[str, torch.Tensor]) -> torch.Tensor | int:
        """The sum of `terms` with their weights (0 when there is none), to add to the model's loss."""
        weights = {
            "contrastive_loss": self.contrastive_loss_weight,
            "entropy_margin_loss": self.entropy_margin_loss_weight,
            "fixation_loss": self.fixation_loss_weight,
        }
        return sum(weights[name] * term for name, term in terms.items())
