"""The lmms-eval model adapter: `lmms-eval --model foveated_vlm --model_args pretrained=DIR --tasks mvbench`.

lmms-eval (0.7.x) finds models from other packages through the Python entry-point group `lmms_eval.models`: at
start-up it loads every entry point of that group and registers the `ModelManifest` each one gives (its
`models/registry_v2.py`, `load_entrypoint_manifests`). This package's `setup.cfg` declares

    [options.entry_points]
    lmms_eval.models = foveated_vlm = foveated_vlm.evaluation.lmms_eval_model:MANIFEST

so an installed foveated-vlm is found (with lmms-eval installed beside it: see setup.cfg's `eval` extra) without a
fork of lmms-eval and without `LMMS_EVAL_PLUGINS` (which 0.7 deprecates). `foveated_vlm` itself never imports this
module: only lmms-eval (or a user) does.

`model_args`: `pretrained` (a checkpoint directory or Hub id that `from_pretrained` loads: model and processor),
`num_frames` (default: the processor's), `device` (default: cuda when there is one, else cpu) and `dtype`
(float32, bfloat16 or float16; default float32).

Requests are answered one at a time (`batch_size` 1), each with its document's video (`doc_to_visual` gives a list
holding one video path, or the frames of one video as PIL images), the task's context as the user turn before the
video (`data_collator.chat_prompt`, so the queries can read the question), and the fine pass:
- `generate_until`: greedy decoding up to `max_new_tokens`, cut before the first of the `until` strings.
- `loglikelihood`: minus the summed log-probability of the continuation's tokens under the fine pass's `logits`
  (lmms-eval 0.7 picks the option with the lowest number) and whether greedy decoding would give exactly them.
A request whose video is missing or unreadable, or whose prompt is longer than the language model's positions, is
skipped and counted (logged with the running counts): it scores as a wrong answer ("" or an infinite negative
log-likelihood) and the run goes on.
"""

import importlib.util
import logging
import math
import sys
import types

import filelock
import torch
from lmms_eval.api.instance import GenerationResult, Instance
from lmms_eval.api.model import lmms
from lmms_eval.models.registry_v2 import ModelManifest
from PIL import Image
from tqdm.auto import tqdm

from ..data.sample_counts import SampleCounts, reason_of, summary_line
from ..training.checkpoints import load_strictly
from ..training.data_collator import SequenceTooLong, VideoTextCollator
from ..video_processing_foveated import VideoDecodeError

__all__ = ["MANIFEST", "FoveatedVLMLmms"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 32  # when a task's generation_kwargs name none; MVBench and Video-MME ask for 16
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _filelock_api_for_lmms_eval():
    """lmms-eval 0.7.3's `simple_evaluate` patches `filelock._api.FileLockMeta` (a cross-class lock cache it needs
    with `datasets`) and fails with "No module named 'filelock._api'" on filelock 4 (this package's range), which
    moved those names into `filelock._core`. Give it the module under its old name, holding the same objects, so
    its patch applies to the filelock that is installed. Done when lmms-eval loads this module through its entry
    points, before any evaluation; nothing is changed where filelock still has `_api`."""
    if importlib.util.find_spec("filelock._api") is not None:
        return
    from filelock._core._settings import UNSET_FILE_MODE
    from filelock._core._singleton import FileLockMeta

    api = types.ModuleType("filelock._api", "filelock 3's name for what filelock 4 keeps in filelock._core")
    api.FileLockMeta, api.BaseFileLock, api._UNSET_FILE_MODE = FileLockMeta, filelock.BaseFileLock, UNSET_FILE_MODE
    sys.modules[api.__name__] = filelock._api = api


_filelock_api_for_lmms_eval()


class FoveatedVLMLmms(lmms):
    """lmms-eval's simple-model interface over `FoveatedVLMForConditionalGeneration` and its processor."""

    is_simple = True  # takes the task's raw context string and `doc_to_visual`, not chat messages

    def __init__(
        self,
        pretrained: str,
        num_frames: int | str | None = None,
        device: str | None = None,
        dtype: str = "float32",
        batch_size: int | str = 1,
        max_batch_size: int | None = None,  # lmms-eval passes it to every model; it only matters for batch_size=auto
    ):
        super().__init__()
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if dtype not in DTYPES:
            raise ValueError(f"model_args dtype={dtype!r}: expected one of {sorted(DTYPES)}")
        if str(batch_size) != "1":
            raise ValueError(
                f"batch_size={batch_size!r}: the foveated_vlm adapter answers one request at a time; use 1"
            )
        if num_frames is not None:
            if not str(num_frames).isdigit() or int(num_frames) < 1:
                raise ValueError(f"model_args num_frames={num_frames!r}: expected an integer >= 1")
            num_frames = int(num_frames)
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            self.model = load_strictly(AutoModelForImageTextToText, pretrained, dtype=DTYPES[dtype]).eval()
            self.processor = AutoProcessor.from_pretrained(pretrained)
        except OSError as error:  # not a checkpoint directory, or a Hub id that cannot be reached
            raise OSError(f"model_args pretrained={pretrained!r}: {error}") from error
        self.processor.check_model_config(self.model.config)
        self.pretrained = pretrained
        self.model.to(self._device)
        self.tokenizer = self.processor.tokenizer
        self.num_frames = num_frames
        self.max_positions = self.model.config.text_config.max_position_embeddings
        self.collator = VideoTextCollator(self.processor, train_captions=False)  # strips markup from task text
        self.counts = SampleCounts()  # requests answered and skipped, by reason, over this adapter's life
        self._prompt: tuple = (None, None)  # (task, split, doc id, context) and the processor's output for it
        self._patch_pass: tuple = (None, None)  # (task, split, doc id) and the patch pass of its video

    @property
    def device(self) -> torch.device:
        return self._device

    def _visual(self, request: Instance):
        """The request's one video as the processor takes it (a path, an array, or a list of PIL frames), or None
        for a text-only task. `doc_to_visual` returns a list: one video path, or the frames of one video."""
        _, _, doc_to_visual, doc_id, task, split = request.args
        visuals = doc_to_visual(self.task_dict[task][split][doc_id])
        if visuals is None or (isinstance(visuals, list) and not visuals):
            return None
        if not isinstance(visuals, list):
            return visuals
        if all(isinstance(item, Image.Image) for item in visuals):
            return visuals  # the frames of one video
        if len(visuals) != 1:
            raise VideoDecodeError(
                f"task {task} doc {doc_id}", f"got {len(visuals)} visuals; the model reads one video per request"
            )
        return visuals[0]

    def _inputs(self, request: Instance, continuation: str = "", room: int = 0) -> tuple[dict, int] | None:
        """Model inputs `[1, L]` for the request's context followed by the `continuation` text's ids, and how many
        ids the continuation has; None when the video cannot be read or the text and `room` more tokens do not fit
        the language model (the request is then counted as skipped and logged)."""
        _, _, _, doc_id, task, _ = request.args
        try:
            batch = dict(self._prompt_inputs(request))  # a copy: the continuation is added to this request's only
            # Tokenised apart from the prompt, as the processor tokenises answers: the ids the prompt ends with stay.
            continuation_ids = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            continuation_ids = torch.tensor([continuation_ids], dtype=torch.long)  # [1, n]; n = 0 for no continuation
            batch["input_ids"] = torch.cat([batch["input_ids"], continuation_ids], dim=1)  # [1, L]
            batch["attention_mask"] = torch.ones_like(batch["input_ids"])  # one row: no padding
            if batch["input_ids"].shape[1] + room > self.max_positions:
                raise SequenceTooLong(
                    f"{batch['input_ids'].shape[1]} tokens (and {room} to generate), more than the language model's "
                    f"{self.max_positions} positions (a long text or too many frames)"
                )
        except (OSError, VideoDecodeError, SequenceTooLong) as error:
            self.counts.skipped[reason_of(error, "request_")] += 1
            logger.warning("skipped task %s doc %s: %s (%s)", task, doc_id, error, self._summary())
            return None
        self.counts.succeeded += 1
        batch = {name: value.to(self._device) for name, value in batch.items()}
        if "pixel_values_videos" in batch:
            batch["pixel_values_videos"] = batch["pixel_values_videos"].to(self.model.dtype)
        return batch, continuation_ids.shape[1]

    def _prompt_inputs(self, request: Instance) -> dict:
        """The processor's output for the request's context and video; the options of one doc, asked back to back,
        share it, so its video is decoded once (kept until another doc or context comes)."""
        context, _, _, doc_id, task, split = request.args
        key = (task, split, doc_id, context)
        if self._prompt[0] != key:
            video = self._visual(request)
            prompt = self.collator.plain_text(context)
            if video is None:
                messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
                text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            else:
                text = self.collator.prompt_text(prompt)
            videos = None if video is None else [video]
            self._prompt = (key, self.processor(text=[text], videos=videos, num_frames=self.num_frames))
        return self._prompt[1]

    def _summary(self) -> str:
        return summary_line(self.counts.succeeded, self.counts.skipped)

    @torch.no_grad()
    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Greedy text for each request: `gen_kwargs` `max_new_tokens` at most, cut before the first `until` string."""
        answers = []
        for request in tqdm(requests, desc="foveated_vlm generate_until", disable=self.rank != 0):
            _, gen_kwargs, *_ = request.args
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            inputs = self._inputs(request, room=1)  # at least one token to generate
            if inputs is None:
                answers.append("")
                continue
            batch, _ = inputs
            length = batch["input_ids"].shape[1]
            # The language model runs no further than its positions; a task that asks for more gets what fits.
            max_new_tokens = min(
                int(gen_kwargs.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)), self.max_positions - length
            )
            ids = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
            text = self.tokenizer.decode(ids[0, length:], skip_special_tokens=True)
            for stop in until:
                if stop:
                    text = text.split(stop, 1)[0]
            answers.append(text.strip())
        if self.counts.skipped:
            logger.warning("foveated_vlm requests: %s", self._summary())
        return answers

    @torch.no_grad()
    def loglikelihood(self, requests: list[Instance]) -> list[GenerationResult]:
        """(-log P(continuation | context, video), whether greedy decoding gives exactly the continuation) per
        request, from the fine pass's logits (the log-probability summed over the continuation's tokens).

        Two things lmms-eval 0.7.3 does shape the result:
        - Its `multiple_choice` scoring picks `argmin` of the first numbers ("we return the actual loss in many
          model loglikelihood", api/task.py), as its own models return a loss. So the first number is the negative
          log-likelihood: lower is likelier, and the option chosen is the most likely one, as in lm-eval's `acc`.
        - Its evaluator passes every response through `unwrap_generation_output`, which makes anything but a string
          or a `GenerationResult` into `str(...)`: a plain pair would reach scoring as the string "(3.1, False)" and
          fail there ("too many values to unpack"). Each pair is therefore the `text` of a `GenerationResult`, which
          is unwrapped to the pair itself.
        """
        results = []
        for request in tqdm(requests, desc="foveated_vlm loglikelihood", disable=self.rank != 0):
            _, target, _, doc_id, task, split = request.args
            continuation = target if isinstance(target, str) else target(self.task_dict[task][split][doc_id])
            inputs = self._inputs(request, continuation)
            if inputs is None:
                results.append((math.inf, False))  # never the chosen option
                continue
            batch, count = inputs
            if count == 0:  # an empty continuation is certain
                results.append((0.0, True))
                continue
            logits = self.model.lm_head(self._fine_hidden(batch, (task, split, doc_id)))  # [1, L, V] fine pass
            # Position i predicts token i+1: the continuation's `count` tokens are predicted by the `count` before.
            log_probs = logits[0, -count - 1 : -1].float().log_softmax(-1)  # [count, V]
            tokens = batch["input_ids"][0, -count:]  # [count]
            total = log_probs.gather(1, tokens[:, None]).sum()
            results.append((-float(total), bool((log_probs.argmax(-1) == tokens).all())))
        if self.counts.skipped:
            logger.warning("foveated_vlm requests: %s", self._summary())
        return [GenerationResult(text=pair) for pair in results]

    def _fine_hidden(self, batch: dict, doc: tuple) -> torch.Tensor:
        """The fine pass's hidden states `[1, L, D]`; the options of one doc (lmms-eval asks them back to back) share
        one patch pass of its video, kept until another doc's video comes."""
        pixels = batch.get("pixel_values_videos")
        if pixels is None:
            return self.model.model(**batch).last_hidden_state
        if self._patch_pass[0] != doc:
            _, cache = self.model.foveated_encoder.encode_patches(pixels.flatten(0, 1), return_patch_states=False)
            self._patch_pass = (doc, cache)
        return self.model.model(**batch, vision_cache=self._patch_pass[1]).last_hidden_state

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError(
            "foveated_vlm answers single-turn requests only (generate_until, loglikelihood); multi-round tasks are "
            "not supported"
        )


# lmms-eval's entry-point payload (group `lmms_eval.models`, see setup.cfg): `--model foveated_vlm` -> this class.
MANIFEST = ModelManifest(model_id="foveated_vlm", simple_class_path=f"{__name__}.{FoveatedVLMLmms.__name__}")
