"""The foveation experiment's training terms, composed around the model from outside.

The core model computes what a saved model computes: its contract loss (reconstruction and caption, both passes).
What only the experiment turns lives here and never in a saved config: the seeds' two regularisers, the supervised
fixation loss with its schedule, the glimpse search (no labels: the planned queries are pulled towards the
perturbed ones that answered best), the glimpse policy (no labels either: hard glimpses sampled from the planned
fixation maps, each answered by the model, and the score-function estimator, REINFORCE, raising the log-probability
of the glimpses that answered better than the others of their video), and the random-query control (the fine
pass reads every frame with fresh std-1 queries instead of the planned ones, so any fine/coarse gap it shows is not
from choosing). `FoveatedTrainer` takes a `FoveationLosses` and adds its terms to the model's loss; train.py builds
it from its foveation flags.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..encoder_foveated import VisionKVCache
from ..modeling_foveated import fixation_entropy, mask_positions, target_share

__all__ = [
    "FINE_QUERIES",
    "FoveationLosses",
    "best_glimpses",
    "contrastive_loss",
    "drawing_log_probabilities",
    "entropy_margin_loss",
    "fixation_loss",
    "frames_without_gradient",
    "glimpse_policy_loss",
    "glimpse_search_loss",
    "glimpse_windows",
    "maps_over_a_fixed_vit",
    "random_fine_queries",
    "sampled_glimpses",
    "video_losses",
]

FINE_QUERIES = ("predicted", "random")  # what the fine pass reads with: the planned queries, or the control's draws
GLIMPSE_FRAMES = ("all", "one")  # which frames a video's drawn glimpses vary at: every frame, or one per step
# Whether the glimpse policy's gradient also moves the ViT (its keys and weights), or only the planned queries.
POLICY_VIT = ("trained", "fixed")
UNDRAWN = -1  # a glimpse centre that was not drawn: that frame is read softly, wherever its query attends


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


def glimpse_search_loss(queries: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of the planned fine queries `[B, T, K, qd]` to the best-answering ones (detached): 0
    where the planned queries answered best. It moves the query heads and the language model that plans (and, with
    `static_query_base`, the static queries), never the ViT: pulling fixation maps instead also trains the shared
    keys, which then collapsed every map (coarse too) onto the same few patches (docs/foveation_experiment.md)."""
    return F.mse_loss(queries.float(), best.float())


@torch.no_grad()
def best_glimpses(
    model, inputs: dict, planned: torch.Tensor, candidates: int, noise: float, temperature: float | None = None
) -> torch.Tensor:
    """The fine queries `[B, T, K, qd]` that answer each video best among its planned queries `planned` and
    `candidates` perturbations of them (`noise` std added to every query).

    One forward of the model (no gradient) over the batch repeated `1 + candidates` times, on one patch pass; "best"
    is the lowest caption cross-entropy of that video, the task's own loss: nothing says where anything is. Where
    the planned queries answer best, they are the target. `temperature`: the candidates read with this
    query temperature instead of the model's (lower: sharper glimpses that differ from each other, where the
    planned maps are still near flat). The candidates are scored in eval mode (`video_losses`); the glimpse-search
    runs in docs/foveation_experiment.md scored them in training mode, which also fed the copies to the batch
    norms' running statistics (fixed).
    """
    batch, copies = planned.shape[0], 1 + candidates
    queries = planned.detach().repeat(copies, 1, 1, 1)  # [copies*B, T, K, qd], copy-major
    queries[batch:] += noise * torch.randn_like(queries[batch:])
    encoder = model.model.foveated_encoder
    own_temperature = encoder.query_temperature
    encoder.query_temperature = temperature or own_temperature
    try:
        video_loss = video_losses(model, inputs, copies, queries)
    finally:
        encoder.query_temperature = own_temperature
    best = video_loss.view(copies, batch).argmin(0)  # [B]: which copy answered each video best
    return queries.view(copies, *planned.shape)[best, torch.arange(batch, device=best.device)]  # [B, T, K, qd]


def frames_without_gradient(model, inputs: dict) -> VisionKVCache:
    """The batch's one patch pass `[B*T]` with no gradient, in eval mode: what the glimpse draws read (and, for
    `glimpse_policy_vit="fixed"`, the policy's maps), computed once per step however many read it."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model.model.encode_video(inputs["pixel_values_videos"])
    finally:
        model.train(was_training)


def video_losses(
    model, inputs: dict, copies: int, queries: torch.Tensor, patch_mask=None, encoded: VisionKVCache | None = None
) -> torch.Tensor:
    """Per-video caption cross-entropy `[copies*B]` of the fine pass alone over the batch repeated `copies` times
    (copy-major), read with `queries` `[copies*B, T, K, qd]` (and `patch_mask`), on one patch pass: `encoded`
    (`frames_without_gradient`), or its own.

    In eval mode: no dropout, and the batch norms read their running statistics instead of adding the copies'
    (which are not training batches) to them. Its callers run it without gradients, except `sampled_glimpses` when
    the answers of its glimpses are trained."""
    base, was_training = model.model, model.training
    input_ids = inputs["input_ids"].repeat(copies, 1)
    mask = inputs.get("attention_mask")
    mask = None if mask is None else mask.repeat(copies, 1)
    cache = encoded if encoded is not None else frames_without_gradient(model, inputs)
    model.eval()
    try:
        cache = VisionKVCache(  # [B*T] frames -> copy-major [copies*B*T]
            [k.repeat(copies, 1, 1, 1) for k in cache.keys],
            [v.repeat(copies, 1, 1, 1) for v in cache.values],
            cache.num_prefix_tokens,
            cache.grid,
        )
        video = base.video_layout(input_ids, inputs["pixel_values_videos"].repeat(copies, 1, 1, 1, 1))
        positions = None if mask is None else mask_positions(mask)  # as the forward's
        outputs = base.fine_pass(
            queries, video, cache, False, patch_mask, attention_mask=mask, position_ids=positions, use_cache=False
        )
    finally:
        model.train(was_training)
    labels = inputs["labels"].repeat(copies, 1)[:, 1:]  # [copies*B, L-1]: the token each position predicts
    supervised = labels != -100
    logits = model.lm_head(outputs.last_hidden_state[:, :-1][supervised])  # [M, vocab]
    token_loss = torch.zeros(supervised.shape, device=logits.device)
    token_loss[supervised] = F.cross_entropy(logits.float(), labels[supervised], reduction="none")
    return token_loss.sum(-1) / supervised.sum(-1).clamp_min(1)  # [copies*B]


def drawing_log_probabilities(fixations: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Fixation maps `[..., gh, gw]` -> the log-probabilities `[..., gh*gw]` glimpse centres are drawn with: each
    map raised to `1 / temperature` and renormalised. Above 1 the draws spread wider than the map (they keep trying
    other places after the map has settled on one); the order of the places is the map's at any temperature, so
    what raises a place's drawing probability raises its fixation."""
    log_maps = fixations.float().flatten(-2).clamp_min(1e-12).log()  # [..., P]
    return log_maps if temperature == 1 else (log_maps / temperature).log_softmax(-1)


def glimpse_windows(centres: torch.Tensor, grid: tuple[int, int], radius: int) -> torch.Tensor:
    """Flat patch indices `[...]` on a `grid` (gh, gw) -> bool masks `[..., gh, gw]` of the square of patches within
    `radius` of each (clipped at the frame's edges): where a hard glimpse centred there may look. `UNDRAWN` (-1)
    marks a glimpse that was not drawn: its mask holds every patch."""
    gh, gw = grid
    rows = torch.arange(gh, device=centres.device)
    cols = torch.arange(gw, device=centres.device)
    near_row = ((centres // gw).unsqueeze(-1) - rows).abs() <= radius  # [..., gh]
    near_col = ((centres % gw).unsqueeze(-1) - cols).abs() <= radius  # [..., gw]
    undrawn = (centres == UNDRAWN)[..., None, None]  # UNDRAWN: the glimpse may look anywhere, as the soft one does
    return (near_row.unsqueeze(-1) & near_col.unsqueeze(-2)) | undrawn  # [..., gh, gw]


def sampled_glimpses(
    model,
    inputs: dict,
    planned: torch.Tensor,
    fixations: torch.Tensor,
    samples: int,
    radius: int,
    frames="all",
    encoded: VisionKVCache | None = None,
    answers_train: bool = False,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard glimpses drawn from the planned fine fixations, and how well each answered.

    For each of `samples` copies of the batch, every frame's glimpse centre is drawn from its planned fine map
    `fixations` `[B, T, K, gh, gw]`; the planned queries `planned` `[B, T, K, qd]` then read only the patches within
    `radius` of it (`fine_patch_mask`), and the language model answers from those tokens. One forward of the model
    over the copies, on one patch pass. Returns the centres `[S, B, T, K]` (flat patch indices) and each copy's
    per-video caption cross-entropy `[S, B]`, the task's own loss: nothing says where anything is.

    No gradient, unless `answers_train`: then the losses carry one to what reads the glimpses (the language model,
    the frame tokens' projection and location, the queries' pass over the cached keys; not the planned queries, not
    the patch pass), so the reader learns to answer from hard glimpses, as RAM trains its core network on its
    sampled glimpses while REINFORCE trains where they go.

    `frames="one"`: the draws of a video differ at one frame only, drawn uniformly per video and step; its other
    frames are read as in the forward, softly (their centres `UNDRAWN`), so the draws' differences in answer are
    credited to that frame's choice alone instead of being shared by T independent choices. `encoded`: the batch's
    `frames_without_gradient`, if already made. `temperature`: the centres are drawn from the maps at it
    (`drawing_log_probabilities`).
    """
    if frames not in GLIMPSE_FRAMES:
        raise ValueError(f"frames={frames!r} is invalid; expected one of {list(GLIMPSE_FRAMES)}")
    fixations = fixations.detach()
    batch, grid = planned.shape[0], tuple(fixations.shape[-2:])
    probabilities = fixations.float().flatten(-2)  # [B, T, K, P]: at temperature 1, the maps themselves
    if temperature != 1:
        probabilities = drawing_log_probabilities(fixations, temperature).exp()
    probabilities = probabilities.flatten(0, -2)  # [B*T*K, P]
    centres = torch.multinomial(probabilities, samples, replacement=True)  # [B*T*K, S]
    centres = centres.t().reshape(samples, *fixations.shape[:3])  # [S, B, T, K]
    if frames == "one":
        num_frames = fixations.shape[1]
        drawn = torch.randint(num_frames, (batch,), device=centres.device)  # [B]: the frame each video's draws vary
        soft = torch.arange(num_frames, device=centres.device) != drawn[:, None]  # [B, T]
        centres = centres.masked_fill(soft[None, :, :, None], UNDRAWN)
    masks = glimpse_windows(centres, grid, radius).flatten(0, 1)  # [S*B, T, K, gh, gw], copy-major
    queries = planned.detach().repeat(samples, 1, 1, 1)  # [S*B, T, K, qd]
    with torch.set_grad_enabled(answers_train):
        video_loss = video_losses(model, inputs, samples, queries, masks, encoded)
    return centres, video_loss.view(samples, batch)


def maps_over_a_fixed_vit(
    model, inputs: dict, queries: torch.Tensor, encoded: VisionKVCache | None = None
) -> torch.Tensor:
    """The fine fixation maps `[B, T, K, gh, gw]` of `queries` `[B, T, K, qd]`, with a gradient to the queries alone:
    the ViT is held fixed (a patch pass without gradient, and its weights left out of the queries' pass), so a
    policy loss on them moves the planned queries, not the keys and weights the static queries share directly. (The
    planned queries were planned from the coarse pass's tokens, so their own gradient still reaches the ViT that
    way, as the task's loss does.) `encoded`: the batch's `frames_without_gradient`, if already made."""
    encoder = model.model.foveated_encoder
    cache = encoded if encoded is not None else frames_without_gradient(model, inputs)
    trained = [parameter for parameter in encoder.parameters() if parameter.requires_grad]
    for parameter in trained:  # recorded without them, the graph carries no gradient to the ViT
        parameter.requires_grad_(False)
    try:
        _, maps = encoder.query(queries.flatten(0, 1), cache, return_fixations=True)
    finally:
        for parameter in trained:
            parameter.requires_grad_(True)
    return maps.unflatten(0, queries.shape[:2])


def glimpse_policy_loss(
    fixations: torch.Tensor, centres: torch.Tensor, draw_losses: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """REINFORCE with a leave-one-out baseline over the sampled glimpses (`sampled_glimpses`).

    fixations: the planned fine maps `[B, T, K, gh, gw]`, with their gradient (the policy); centres `[S, B, T, K]`:
    the glimpses drawn from them (`UNDRAWN` where a frame was read softly); draw_losses `[S, B]`: each draw's answer
    loss. Each draw's advantage is its loss against the mean of the video's other draws; minimising
    `advantage * log p(draw)` (mean over draws and videos) raises the probability of the places that answered better
    than the video's other draws and lowers the rest.
    The advantages are divided by their spread over the batch (at least 0.01 nats), so the step keeps its size as
    the answers' differences shrink; before that division the estimate is unbiased for the gradient of the expected
    answer loss of hard glimpses, after it only roughly so. The maps' gradient reaches the planned queries and also
    the ViT's keys, which the static queries share. Needs 2 draws or more. `temperature`: the one the centres were
    drawn at (`sampled_glimpses`).
    """
    samples = centres.shape[0]
    log_maps = drawing_log_probabilities(fixations, temperature)  # [B, T, K, P]: what the centres were drawn from
    drawn = centres != UNDRAWN  # [S, B, T, K]: glimpses read softly were not drawn and carry no probability
    index = centres.clamp_min(0).unsqueeze(-1)
    chosen = log_maps.unsqueeze(0).expand(samples, *log_maps.shape).gather(-1, index).squeeze(-1)  # [S, B, T, K]
    log_probability = (chosen * drawn).flatten(2).sum(-1)  # [S, B]: a draw's glimpses are drawn independently
    others = (draw_losses.sum(0, keepdim=True) - draw_losses) / (samples - 1)  # [S, B]
    advantage = (draw_losses - others).detach()  # > 0: this draw answered worse than the video's others
    advantage = advantage / advantage.std().clamp_min(0.01)  # unit spread: the step does not shrink with the loss
    return (advantage * log_probability).mean()


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
    many optimizer steps, then release the queries; 0: throughout. glimpse_search: perturbed fine queries tried
    per video on each training step (`best_glimpses`, with `glimpse_noise` and `glimpse_temperature`); the planned
    queries are pulled towards the best answer's (`glimpse_search_loss` at `glimpse_search_weight`); no label is
    read. glimpse_samples: hard glimpses drawn per video each step from the planned fine maps (`sampled_glimpses`,
    each reading the patches within `glimpse_radius` of its centre), the maps trained by REINFORCE on their answers
    (`glimpse_policy_loss` at `glimpse_policy_weight`; centres drawn at `glimpse_sample_temperature`); no label is
    read; glimpse_draw_loss_weight > 0 also trains what reads the glimpses on the draws' answers (their mean loss at
    that weight); glimpse_frames "one" varies the draws at one frame per video (`sampled_glimpses`);
    glimpse_policy_vit "fixed" trains the maps over a ViT held fixed (`maps_over_a_fixed_vit`). fine_queries:
    "random" is the control. restart_step: train.py starts again from other initial weights, up to `restarts`
    times, when at that step the fine pass's caption loss is not below the coarse one's by `restart_margin` over the
    last `restart_window` steps of training logs (`restart_check.RestartCheck`).
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
    glimpse_search: int = field(
        default=0,
        metadata={"help": "perturbed fine queries tried per video each step; planned ones pulled to the best"},
    )
    glimpse_noise: float = field(default=1.0, metadata={"help": "std of the glimpse search's perturbations"})
    glimpse_search_weight: float = field(default=1.0, metadata={"help": "weight of the glimpse search loss"})
    glimpse_temperature: float | None = field(
        default=None, metadata={"help": "query temperature of the searched glimpses (default: the model's)"}
    )
    glimpse_samples: int = field(
        default=0,
        metadata={"help": "hard glimpses drawn per video each step from the planned maps, trained by REINFORCE"},
    )
    glimpse_radius: int = field(default=1, metadata={"help": "a drawn glimpse reads the patches this near its centre"})
    glimpse_frames: str = field(
        default="all",
        metadata={"help": "'one': each step's draws of a video differ at one random frame, the rest read softly"},
    )
    glimpse_policy_weight: float = field(default=1.0, metadata={"help": "weight of the glimpse policy loss"})
    glimpse_sample_temperature: float = field(
        default=1.0, metadata={"help": "draw glimpse centres from the maps at this temperature (> 1: wider)"}
    )
    glimpse_draw_loss_weight: float = field(
        default=0.0,
        metadata={"help": "train the reader on the drawn glimpses' answers too (their mean loss, this weight)"},
    )
    glimpse_policy_vit: str = field(
        default="trained",
        metadata={"help": "'fixed': the glimpse policy trains what plans the queries, not the ViT"},
    )
    restart_step: int = field(
        default=0,
        metadata={"help": "at this step, start again from other initial weights if fine has not beaten coarse; 0: off"},
    )
    restart_window: int = field(default=300, metadata={"help": "steps of training logs the restart check averages"})
    restart_margin: float = field(
        default=0.02, metadata={"help": "the coarse - fine caption loss a run needs at --restart_step to go on"}
    )
    restarts: int = field(default=2, metadata={"help": "starts from other initial weights at most (the last runs on)"})

    def __post_init__(self):
        # Messages name the train.py flags: this dataclass is their argument group.
        if self.fine_queries not in FINE_QUERIES:
            raise ValueError(f"--fine_queries {self.fine_queries!r} is invalid; expected one of {list(FINE_QUERIES)}")
        for name in (
            "contrastive_loss_weight",
            "entropy_margin_loss_weight",
            "fixation_loss_weight",
            "glimpse_draw_loss_weight",
        ):
            if not getattr(self, name) >= 0:
                raise ValueError(f"--{name} {getattr(self, name)!r} is invalid; expected a number >= 0")
        if not isinstance(self.fixation_loss_steps, int) or self.fixation_loss_steps < 0:
            raise ValueError(f"--fixation_loss_steps {self.fixation_loss_steps!r} must be >= 0 (0: never stop)")
        if not isinstance(self.glimpse_search, int) or self.glimpse_search < 0:
            raise ValueError(f"--glimpse_search {self.glimpse_search!r} must be an integer >= 0 (0: off)")
        if not isinstance(self.glimpse_samples, int) or self.glimpse_samples == 1 or self.glimpse_samples < 0:
            raise ValueError(
                f"--glimpse_samples {self.glimpse_samples!r} must be 0 (off) or an integer >= 2 (each draw's "
                "baseline is the video's other draws)"
            )
        if self.glimpse_policy_vit not in POLICY_VIT:
            raise ValueError(
                f"--glimpse_policy_vit {self.glimpse_policy_vit!r} is invalid; expected one of {list(POLICY_VIT)}"
            )
        if self.glimpse_frames not in GLIMPSE_FRAMES:
            raise ValueError(
                f"--glimpse_frames {self.glimpse_frames!r} is invalid; expected one of {list(GLIMPSE_FRAMES)}"
            )
        if not isinstance(self.glimpse_radius, int) or self.glimpse_radius < 0:
            raise ValueError(f"--glimpse_radius {self.glimpse_radius!r} must be an integer >= 0 (0: one patch)")
        for name in ("glimpse_noise", "glimpse_search_weight", "glimpse_policy_weight", "glimpse_sample_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name} {getattr(self, name)!r} is invalid; expected a number > 0")
        if self.glimpse_temperature is not None and not self.glimpse_temperature > 0:
            raise ValueError(f"--glimpse_temperature {self.glimpse_temperature!r} is invalid; expected a number > 0")
        for name in ("restart_step", "restarts"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"--{name} {getattr(self, name)!r} must be an integer >= 0")
        if not isinstance(self.restart_window, int) or self.restart_window < 1:
            raise ValueError(f"--restart_window {self.restart_window!r} must be an integer >= 1")

    @property
    def trains_draw_answers(self) -> bool:
        """Whether the drawn glimpses' answer loss trains the reader (`sampled_glimpses(answers_train=True)`)."""
        return self.glimpse_samples > 0 and self.glimpse_draw_loss_weight > 0

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

    def terms(
        self,
        outputs,
        fixation_targets: torch.Tensor | None = None,
        glimpse_targets: torch.Tensor | None = None,
        glimpse_draws: tuple[torch.Tensor, torch.Tensor] | None = None,
        policy_maps: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The terms that are on, by the name they are logged under, from a forward's outputs (which need the
        fixations, `output_attentions=True`, for the entropy margin, the fixation loss and the glimpse policy).
        `fixation_targets` `[B, T, gh, gw]`: pass them only on the steps the fixation loss supervises;
        `glimpse_targets`: `best_glimpses`'; `glimpse_draws`: `sampled_glimpses`' centres and losses; `policy_maps`:
        the maps the policy trains, if not the forward's fine fixations (`maps_over_a_fixed_vit`)."""
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
        if glimpse_targets is not None:
            terms["glimpse_search_loss"] = glimpse_search_loss(outputs.queries, glimpse_targets)
        if glimpse_draws is not None:
            maps = outputs.fixations_fine if policy_maps is None else policy_maps
            terms["glimpse_policy_loss"] = glimpse_policy_loss(maps, *glimpse_draws, self.glimpse_sample_temperature)
            if self.trains_draw_answers:
                terms["glimpse_draw_loss"] = glimpse_draws[1].mean()
        return terms

    def weighted(self, terms: dict[str, torch.Tensor]) -> torch.Tensor | int:
        """The sum of `terms` with their weights (0 when there is none), to add to the model's loss."""
        weights = {
            "contrastive_loss": self.contrastive_loss_weight,
            "entropy_margin_loss": self.entropy_margin_loss_weight,
            "fixation_loss": self.fixation_loss_weight,
            "glimpse_search_loss": self.glimpse_search_weight,
            "glimpse_policy_loss": self.glimpse_policy_weight,
            "glimpse_draw_loss": self.glimpse_draw_loss_weight,
        }
        return sum(weights[name] * term for name, term in terms.items())
