"""Frame-by-frame inference: per frame one patch pass, one cheap query pass, one step of two language-model streams.

Proposal §9 and appendix B. The coarse stream reads each frame through the static queries and plans where to
look in the next frame; the fine stream reads each frame through the query planned from the frames before it and
predicts the next target. Both streams keep their own language-model cache. They are run as one batch of 2B rows
(coarse rows first) in a single cache, so each frame costs one language-model call, not two.

Because the parallel forward is causal, pushing frames 1..T gives the same queries and predictions as
`FoveatedVLMForConditionalGeneration.forward` on the whole clip (`tests/test_streaming.py` checks it to 1e-4).

Precision (`model.stream(precision=...)`): the push is dominated by the language-model step, which reads all its
weights (~430 MB of fp32 linears for SmolLM2-135M) for 2B rows. "fp32" (the default) streams the model as it is:
exact. The others stream `inference_precision.inference_copy(model, precision)`: "fp32-onednn" (the same arithmetic
on oneDNN's packed kernels) and "fp16" still equal the copy's parallel forward to 1e-4; "int8" to int8's rounding.
`tests/test_stream_precision.py` proves each. bf16 weights are not offered: on this project's CPU a bf16 step of two
rows was slower than fp32 (31 vs 27 ms), and the heads around the language model would need casts at every seam.
"""

import time
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from .inference_precision import PRECISIONS, inference_copy
from .input_checks import InputChecks

__all__ = ["PRECISIONS", "FoveatedStream", "StreamStep", "inference_copy"]


@dataclass
class StreamStep:
    """What one pushed frame t gave.

    query: `[B, K, query_dim]` the query used on frame t. next_query: `[B, K, query_dim]` planned for frame t+1.
    predicted_latent: `[B, C, h, w]` prediction of target t+1 (None without this frame's target).
    fixation / fixation_coarse: `[B, K, gh, gw]` where the fine / static queries looked on frame t.
    timings: seconds spent in `encode`, `queries`, `language_model` and `predict`.
    """

    query: torch.Tensor
    next_query: torch.Tensor
    predicted_latent: torch.Tensor | None
    fixation: torch.Tensor
    fixation_coarse: torch.Tensor
    timings: dict[str, float] = field(default_factory=dict)


class FoveatedStream:
    """A batch of B live videos. Create with `model.stream(...)`, then `push` frames and finally `generate`.

    The language-model context grows by K tokens per frame in each stream (each stream is its own sequence, so the
    two do not share the positions); `push` raises `ValueError`, naming the frame, before the context would pass
    the language model's `max_position_embeddings` (`max_frames` says when: 8,175 frames, 2 h 16 min at 1 fps, for
    the default config, K = 1 and a 16-token prompt). No sliding window: the planned queries depend on the whole
    history, so dropping it would change what the model computes. Nothing of a past frame is kept but its K tokens
    in each stream's cache: the frame's patch keys/values are dropped after its push, so the vision side's memory
    stays flat (`tests/test_long_stream.py`, `benchmarks/long_stream.py`). Like the model's forward, it
    refuses token ids outside the vocabulary and frames that are not floating point, not the config's frame size or
    not finite (see `input_checks`), naming the input and the value.

    `precision` (see `PRECISIONS`): "fp32" streams `model` itself; "fp32-onednn" / "fp16" / "int8" stream
    `inference_copy(model, precision)`, made for this stream (to start many, make one copy and call its `stream()`).
    """

    def __init__(
        self,
        model,
        input_ids: torch.LongTensor | None = None,
        attention_mask=None,
        batch_size: int = 1,
        precision: str = "fp32",
    ):
        model = inference_copy(model, precision)
        self.model = model
        self.base = model.model
        config = model.config
        self.config = config
        device = model.device
        if input_ids is None:
            input_ids = torch.empty(batch_size, 0, dtype=torch.long, device=device)
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape [B, L]; got {tuple(input_ids.shape)}")
        self._check_text(input_ids, "input_ids")
        video_tokens = (config.video_start_token_id, config.frame_token_id, config.video_end_token_id)
        if torch.isin(input_ids, torch.tensor(video_tokens, device=input_ids.device)).any():
            raise ValueError("the prompt of a stream is text only: the stream adds the video tokens itself")
        self.batch_size = input_ids.shape[0]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        self.max_length = config.text_config.max_position_embeddings
        self.closed = False
        self.frames_seen = 0

        start = torch.full((self.batch_size, 1), config.video_start_token_id, dtype=torch.long, device=device)
        self.prompt_length = input_ids.shape[1]
        self.input_ids = torch.cat([input_ids.to(device), start], dim=1)  # what the fine stream has read
        self.attention_mask = torch.cat([attention_mask.to(device), torch.ones_like(start)], dim=1)
        self._check_context(0, "with this prompt")
        self.cache = DynamicCache(config=config.text_config)  # rows [:B] coarse, [B:] fine

        with torch.no_grad():
            embeds = self.base.get_input_embeddings()(self.input_ids)  # [B, P+1, D]
            modes = self.base.mode_embeddings.to(embeds.dtype)  # [2, D]
            coarse, fine = embeds.clone(), embeds.clone()
            coarse[:, -1] += modes[self.base.COARSE]
            fine[:, -1] += modes[self.base.FINE]
            hidden = self._language_model(torch.cat([coarse, fine]), self.attention_mask)
            self.prompt_hidden = hidden[: self.batch_size]  # [B, D]: the coarse stream's reading of the prompt
            self.next_query = self.base.plan_queries(self.prompt_hidden, self.prompt_hidden)  # [B, K, qd]: frame 0's
            self.plan_hidden = hidden[self.batch_size :]  # [B, D]: predicts target 0 from the initial latent

    # ---------------------------------------------------------------------------------------------- helpers
    def _check_text(self, input_ids: torch.Tensor, name: str):
        checks = InputChecks()
        checks.token_ids(input_ids, self.config.text_config.vocab_size, name)
        checks.run()

    @property
    def max_frames(self) -> int:
        """How many frames this stream can read: its prompt, `<video_start>` and K tokens per frame fill the
        language model's context (`max_position_embeddings`); `generate` needs room for `<video_end>` too."""
        return max(self.max_length - self.prompt_length - 1, 0) // self.config.tokens_per_frame

    def _check_context(self, new_tokens: int, adding: str):
        """Refuse, before any state changes, `new_tokens` that would take either stream past the context: RoPE
        would run on at positions the model was never trained on, silently (each stream is its own sequence)."""
        length = self.input_ids.shape[1] + new_tokens
        if length > self.max_length:
            raise ValueError(
                f"{adding}, the stream would hold {length} tokens, past the language model's context of "
                f"{self.max_length} (max_position_embeddings): {self.prompt_length} prompt tokens + <video_start> + "
                f"{self.config.tokens_per_frame} tokens per frame leave room for {self.max_frames} frames; "
                "start a new stream"
            )

    def _language_model(self, embeds: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
        """Run both streams' new tokens `[2B, n, D]`; return the last token's hidden state `[2B, D]`."""
        full_mask = self.attention_mask.repeat(2, 1)  # [2B, L]: both streams have read as many tokens
        positions = (full_mask.long().cumsum(-1) - 1).clamp_min(0)[:, -embeds.shape[1] :]
        out = self.base.language_model(
            inputs_embeds=embeds,
            attention_mask=full_mask,
            position_ids=positions,
            past_key_values=self.cache,
            use_cache=True,
        )
        return out.last_hidden_state[:, -1]

    # ---------------------------------------------------------------------------------------------- public
    @torch.no_grad()
    def push(self, frame: torch.Tensor, target_latent: torch.Tensor | None = None) -> StreamStep:
        """Read frame t `[B, 3, H, W]` (normalised like training frames); `target_latent` `[B, C, h, w]` is its
        target, from which target t+1 is predicted."""
        if self.closed:
            raise RuntimeError("this stream was closed by generate(); start a new stream")
        if frame.dim() != 4 or frame.shape[:2] != (self.batch_size, 3):
            raise ValueError(f"frame must have shape [B={self.batch_size}, 3, H, W]; got {tuple(frame.shape)}")
        config, base, k = self.config, self.base, self.config.tokens_per_frame
        target_shape = (self.batch_size, config.target_channels, config.target_size, config.target_size)
        if target_latent is not None and tuple(target_latent.shape) != target_shape:
            raise ValueError(f"target_latent must have shape {list(target_shape)}; got {list(target_latent.shape)}")
        # Checked where the caller holds them (a live frame is usually still on the CPU): no device read-back then.
        checks = InputChecks()
        checks.frames(frame, config.frame_size, "frame")
        if target_latent is not None:
            checks.finite(target_latent, "target_latent")
        checks.run()
        self._check_context(k, f"at frame {self.frames_seen + 1}")
        timings = {}

        begin = time.perf_counter()
        _, cache = base.foveated_encoder.encode_patches(frame.to(self.model.device), return_patch_states=False)
        timings["encode"] = time.perf_counter() - begin

        begin = time.perf_counter()
        query = self.next_query
        static = base.static_queries.expand(self.batch_size, -1, -1)  # [B, K, qd]
        # Glimpses are independent (each sees the frame and itself), so both streams' queries read the frame in
        # one call as 2K glimpses: the cache is used once and the ViT weights are read once.
        both = torch.cat([static, query.to(static.dtype)], dim=1)  # [B, 2K, qd]
        z, fixations = base.foveated_encoder.query(both, cache, return_fixations=True)  # [B, 2K, D_v], [B, 2K, gh, gw]
        coarse = base.embed_frame_tokens(z[:, :k], base.COARSE, fixations[:, :k])
        fine = base.embed_frame_tokens(z[:, k:], base.FINE, fixations[:, k:])
        tokens = torch.cat([coarse, fine])  # [2B, K, D]: coarse rows, then fine rows
        timings["queries"] = time.perf_counter() - begin

        begin = time.perf_counter()
        self.attention_mask = torch.cat([self.attention_mask, self.attention_mask.new_ones(self.batch_size, k)], 1)
        frame_ids = torch.full((self.batch_size, k), config.frame_token_id, device=self.input_ids.device)
        self.input_ids = torch.cat([self.input_ids, frame_ids], dim=1)
        hidden = self._language_model(tokens, self.attention_mask)  # [2B, D]
        self.next_query = base.plan_queries(hidden[: self.batch_size], self.prompt_hidden)
        self.plan_hidden = hidden[self.batch_size :]
        timings["language_model"] = time.perf_counter() - begin

        begin = time.perf_counter()
        predicted = None
        if target_latent is not None:
            predicted = self.model.predictor(self.plan_hidden, target_latent.to(self.plan_hidden.device))
        timings["predict"] = time.perf_counter() - begin
        self.frames_seen += 1
        return StreamStep(
            query=query,
            next_query=self.next_query,
            predicted_latent=predicted,
            fixation=fixations[:, k:],
            fixation_coarse=fixations[:, :k],
            timings=timings,
        )

    def generate(self, input_ids: torch.LongTensor | None = None, **generate_kwargs) -> torch.LongTensor:
        """Close the video with `<video_end>` (then the optional text `input_ids` `[B, n]`) and continue the fine
        stream with `model.generate` (greedy, sampling, ... as its arguments say). Returns only the new tokens
        `[B, new]`. The stream is closed afterwards."""
        if self.closed:
            raise RuntimeError("generate() was already called on this stream")
        device = self.input_ids.device
        end = torch.full((self.batch_size, 1), self.config.video_end_token_id, dtype=torch.long, device=device)
        if input_ids is not None:
            self._check_text(input_ids, "input_ids")
        suffix = end if input_ids is None else torch.cat([end, input_ids.to(device)], dim=1)
        self._check_context(suffix.shape[1], f"closing the video after {self.frames_seen} frames")
        self.closed = True
        self.cache.batch_select_indices(torch.arange(self.batch_size, 2 * self.batch_size, device=device))
        full_ids = torch.cat([self.input_ids, suffix], dim=1)
        full_mask = torch.cat([self.attention_mask, torch.ones_like(suffix)], dim=1)
        output = self.model.generate(
            input_ids=full_ids, attention_mask=full_mask, past_key_values=self.cache, **generate_kwargs
        )
        return output[:, full_ids.shape[1] :]
