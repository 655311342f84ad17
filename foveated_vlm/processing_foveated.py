"""Processor of the foveated VLM: text with `<video>` placeholders and videos -> model inputs (and caption labels).

Follows transformers' LLaVA and SmolVLM processors (`models/llava/processing_llava.py`,
`models/smolvlm/processing_smolvlm.py`): a `ProcessorMixin` whose sub-processors are its `__init__` arguments (a
`FoveatedVideoProcessor` and the language model's tokenizer), one placeholder in user text expanded by one pure
function, `expand_video_placeholders`, into exactly the layout the model checks,

    <video>  ->  <video_start> <frame> x (T * K) <video_end>        (K = tokens_per_frame)

and a `BatchFeature` out. The call is transformers' generic `ProcessorMixin.__call__`: it merges the options, runs
the video processor, asks `replace_video_token` for each video's expansion and tokenises; this processor adds what the
generic call has no place for, captions' labels and truncation around the video's tokens (see `__call__`). Captions
are supervised with `answers=`: each answer (and the end-of-sequence token) is appended to its prompt and only those
tokens get labels; everything else is -100. The chat template is SmolLM2-Instruct's
(`<|im_start|>role\\n...<|im_end|>\\n`) where a `{"type": "video"}` content item renders as `<video>` (text and video
are the only content items: any other, such as `{"type": "image"}`, is an error rather than silently left out of the
prompt). A turn's text is rendered before its video, the order the model was trained on, even when the video item
comes first (SmolVLM2's habit; a warning says so). Call options are transformers'
(`FoveatedProcessingKwargs`: `padding`, `truncation`, `max_length`, `num_frames`, ..., flat or in `text_kwargs` /
`videos_kwargs`, see `processing_kwargs`), and batches pad on the left unless the tokenizer says otherwise, so that
batched generation continues every prompt at its end:

    prompt = processor.apply_chat_template(  # the prompt before the video: queries are planned from what precedes
        [{"role": "user", "content": [{"type": "text", "text": "Describe the video."}, {"type": "video"}]}],
        add_generation_prompt=True,
    )
    batch = processor(text=[prompt], videos=["clip.mp4"], answers=["A red ball rolls."])   # training
    batch = processor(text=[prompt], videos=["clip.mp4"])                                  # generation
"""

import inspect
import reprlib
import warnings
from typing import Unpack

from transformers.image_processing_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.video_processing_utils import VideoProcessorMixin

from .configuration_foveated import VIDEO_TOKENS, add_video_tokens
from .processing_kwargs import FoveatedProcessingKwargs, TextLayout, accepted_keywords, pad_rows, truncate_rows
from .video_processing_foveated import FoveatedVideoProcessor, make_video_list

__all__ = ["FoveatedVLMProcessor", "expand_video_placeholders", "CHAT_TEMPLATE", "VIDEO_PLACEHOLDER"]

VIDEO_PLACEHOLDER = "<video>"
IGNORE_INDEX = -100  # positions the caption loss skips
CONTENT_TYPES = ("text", "video")  # the chat content items the template renders; it would drop any other silently

# SmolLM2-135M-Instruct's template (with its default system prompt), extended with list contents. A turn's text items
# come first, each on its own line, then one `<video>` per video item, whatever order the items were written in: the
# model was trained on the prompt before the video (the hidden states that plan where to look read only what precedes
# them), so SmolVLM2's habit of writing the video first still gives the trained layout. Assistant turns are marked
# with `{% generation %}` for `return_assistant_tokens_mask=True`.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{% set content = message['content'] if message['content'] is defined else '' %}"
    "{% if content is string %}{% set body = content %}"
    "{% else %}"
    "{% set items = namespace(texts=[], videos=[]) %}"
    "{% for item in content %}"
    "{% if item['type'] == 'text' %}{% set items.texts = items.texts + [item['text']] %}"
    "{% elif item['type'] == 'video' %}{% set items.videos = items.videos + ['<video>'] %}{% endif %}"
    "{% endfor %}"
    "{% set body = (items.texts + items.videos) | join('\n') %}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ body + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ body + '<|im_end|>\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def expand_video_placeholders(
    text: str, num_frames, tokens_per_frame: int = 1, placeholder: str = VIDEO_PLACEHOLDER
) -> str:
    """Replace each `placeholder` in `text` by `<video_start>`, `<frame>` x (T*K), `<video_end>`.

    `num_frames` is T for every video in the text (an int) or one T per placeholder, in order. This is the one
    place the video's token layout is written (the processor's `replace_video_token` calls it); the model checks the
    same count (T*K frame tokens after each `<video_start>`) and raises when it differs.
    """
    pieces = text.split(placeholder)
    counts = [num_frames] * (len(pieces) - 1) if isinstance(num_frames, int) else list(num_frames)
    if len(counts) != len(pieces) - 1:
        raise ValueError(
            f"the text holds {len(pieces) - 1} {placeholder} placeholders but {len(counts)} frame counts were given"
        )
    if tokens_per_frame < 1 or any(count < 1 for count in counts):
        raise ValueError(f"need frame counts >= 1 and tokens_per_frame >= 1; got {counts} and {tokens_per_frame}")
    blocks = [
        VIDEO_TOKENS["video_start"] + VIDEO_TOKENS["frame"] * (count * tokens_per_frame) + VIDEO_TOKENS["video_end"]
        for count in counts
    ]
    return pieces[0] + "".join(block + piece for block, piece in zip(blocks, pieces[1:], strict=True))


def _describe(value) -> str:
    return f"{reprlib.repr(value)} ({type(value).__name__})"


def _as_texts(value, name: str) -> list[str]:
    """A string or a non-empty list of strings -> a list of strings; anything else is an error naming `name`."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a string or a list of strings; got {_describe(value)}")
    if not value:
        raise ValueError(f"{name} is an empty list; expected at least one string")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{index}] is {_describe(item)}; expected a string")
    return list(value)


def check_no_video_tokens(texts: list[str], name: str, placeholder: str) -> None:
    """Raise if `texts[i]` holds one of the video's own tokens: written by hand they would be read as a video block the
    model then refuses (or one that shifts every frame), so text marks a video only with `placeholder`."""
    for index, sample in enumerate(texts):
        for token in VIDEO_TOKENS.values():
            if token in sample:
                raise ValueError(
                    f"{name}[{index}] holds {token!r}, one of the video's own tokens, which the processor writes "
                    f"itself; mark the video with {placeholder} and remove {token!r} from the text"
                )


def check_conversations(conversation) -> None:
    """Raise for what the chat template cannot render: it writes text and `<video>` items and would silently drop
    any other item (an image, audio, a misspelt type), so the model would answer a prompt the user never wrote."""
    if not isinstance(conversation, (list, tuple)) or not conversation:
        raise ValueError(f"conversation must be a non-empty list of messages; got {_describe(conversation)}")
    batched = isinstance(conversation[0], (list, tuple))
    for index, messages in enumerate(conversation if batched else [conversation]):
        where = f"conversation[{index}]" if batched else "conversation"
        if not isinstance(messages, (list, tuple)) or not messages:
            raise ValueError(f"{where} must be a non-empty list of messages; got {_describe(messages)}")
        for position, message in enumerate(messages):
            at = f"{where}[{position}]"
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise ValueError(f"{at} = {_describe(message)}; expected a message {{'role': str, 'content': ...}}")
            content = message.get("content")
            if content is None or isinstance(content, str):
                continue
            if not isinstance(content, (list, tuple)):
                raise ValueError(f"{at}['content'] is {_describe(content)}; expected a string or a list of items")
            for number, item in enumerate(content):
                kind = item.get("type") if isinstance(item, dict) else None
                if kind not in CONTENT_TYPES or (kind == "text" and not isinstance(item.get("text"), str)):
                    raise ValueError(
                        f"{at}['content'][{number}] = {_describe(item)} is not supported: the foveated processor "
                        "reads {'type': 'text', 'text': str} and {'type': 'video'} items only"
                    )


def use_padding_side(tokenizer, side: str) -> None:
    """Pad on `side` from now on, and in the `tokenizer_config.json` that `save_pretrained` writes (which records the
    tokenizer's init kwargs, not its attributes)."""
    tokenizer.padding_side = side
    tokenizer.init_kwargs["padding_side"] = side


def video_before_text(conversation) -> bool:
    """Whether a turn of a (checked) conversation, or of any conversation in a batch, writes a video item before a
    text item: the chat template renders the text first all the same (see `CHAT_TEMPLATE`)."""
    batched = isinstance(conversation[0], (list, tuple))
    for messages in conversation if batched else [conversation]:
        for message in messages:
            content = message.get("content")
            if not isinstance(content, (list, tuple)):
                continue
            kinds = [item["type"] for item in content]
            if "video" in kinds and "text" in kinds[kinds.index("video") :]:
                return True
    return False


class FoveatedVLMProcessor(ProcessorMixin):
    r"""
    Wraps a [`FoveatedVideoProcessor`] and a tokenizer into one processor.

    Creating it adds `<video_start>`, `<frame>` and `<video_end>` to the tokenizer as special tokens (a no-op when
    they are there already, e.g. after `from_pretrained_parts` or loading a saved processor); their ids must match
    the model config's, which [`~FoveatedVLMProcessor.check_model_config`] verifies.

    Args:
        video_processor ([`FoveatedVideoProcessor`]): decodes and prepares the videos.
        tokenizer ([`PreTrainedTokenizerBase`]): the language model's tokenizer.
        chat_template (`str`, *optional*): a Jinja template; defaults to SmolLM2-Instruct's with video items.
        tokens_per_frame (`int`, defaults to 1): K, the visual tokens per frame (the model's `tokens_per_frame`).
        video_token (`str`, defaults to `"<video>"`): the placeholder users write where a video goes.

    Batches are padded on the tokenizer's `padding_side`, which creating the processor sets to `"left"` unless the
    tokenizer was given one explicitly (`padding_side=` or a saved `tokenizer_config.json` that names it), and which
    is saved with the processor: generation continues every row at the end, so a prompt padded on the right would be
    continued after its padding. Training batches may pad on either side; the model gives the same losses.
    """

    valid_processor_kwargs = FoveatedProcessingKwargs
    # The defaults `_merge_kwargs` starts from (transformers' processor-attribute defaults): pad to the longest row and
    # return tensors, as the processor always did.
    text_kwargs = {"padding": "longest", "return_tensors": "pt"}
    videos_kwargs = {"return_tensors": "pt"}

    def __init__(
        self,
        video_processor=None,
        tokenizer=None,
        chat_template=None,
        tokens_per_frame=1,
        video_token=VIDEO_PLACEHOLDER,
    ):
        if not isinstance(tokens_per_frame, int) or tokens_per_frame < 1:
            raise ValueError(f"tokens_per_frame={tokens_per_frame!r} is invalid; expected a positive integer")
        self.tokens_per_frame = tokens_per_frame
        self.video_token = video_token
        super().__init__(video_processor, tokenizer, chat_template=chat_template or CHAT_TEMPLATE)
        if "padding_side" not in tokenizer.init_kwargs:  # no explicit choice: pad for generation, and save that
            use_padding_side(tokenizer, "left")
        ids = add_video_tokens(tokenizer)
        self.video_start_token_id, self.frame_token_id, self.video_end_token_id = (
            ids["video_start_token_id"],
            ids["frame_token_id"],
            ids["video_end_token_id"],
        )
        # transformers' `create_mm_token_type_ids` marks these as video (2); no single `video_token_id` is set, since
        # `<video>` itself never reaches the token ids (the generic count check would compare it with nothing).
        self.video_token_ids = [self.video_start_token_id, self.frame_token_id, self.video_end_token_id]

    def check_argument_for_proper_class(self, argument_name, argument):
        # transformers 5.23 resolves `VideoProcessorMixin` by name only when torchvision is installed, although the
        # class needs no torchvision; check it directly so that the processor works (and loads) without torchvision.
        if argument_name == "video_processor":
            if not isinstance(argument, VideoProcessorMixin):
                raise TypeError(f"video_processor must be a VideoProcessorMixin; got {type(argument).__name__}")
            return VideoProcessorMixin
        return super().check_argument_for_proper_class(argument_name, argument)

    @classmethod
    def from_tokenizer(cls, tokenizer, config=None, tokens_per_frame=None, chat_template=None, **video_kwargs):
        """Build a processor around a language model's tokenizer.

        With a model `config`, the frame size and K come from it and the token ids are checked against it.
        `video_kwargs` go to [`FoveatedVideoProcessor`] (`num_frames`, `fps`, `resize_mode`, ...). The tokenizer is
        set to pad on the left, whatever it was loaded with: this processor is the model's, and the model generates.
        """
        use_padding_side(tokenizer, "left")
        if config is not None:
            video_kwargs.setdefault("size", config.frame_size)
            tokens_per_frame = tokens_per_frame or config.tokens_per_frame
        processor = cls(
            FoveatedVideoProcessor(**video_kwargs),
            tokenizer,
            chat_template=chat_template,
            tokens_per_frame=tokens_per_frame or 1,
        )
        if config is not None:
            processor.check_model_config(config)
        return processor

    def check_model_config(self, config) -> None:
        """Raise `ValueError` listing every place where this processor and a `FoveatedVLMConfig` disagree."""
        pairs = {
            "video_start_token_id": (self.video_start_token_id, config.video_start_token_id),
            "frame_token_id": (self.frame_token_id, config.frame_token_id),
            "video_end_token_id": (self.video_end_token_id, config.video_end_token_id),
            "tokens_per_frame": (self.tokens_per_frame, config.tokens_per_frame),
            "frame size": (self.video_processor.frame_size, config.frame_size),
        }
        problems = [
            f"{name}: processor {mine}, model {theirs}" for name, (mine, theirs) in pairs.items() if mine != theirs
        ]
        if len(self.tokenizer) > config.text_config.vocab_size:
            problems.append(
                f"vocabulary: tokenizer has {len(self.tokenizer)} tokens, model {config.text_config.vocab_size}"
            )
        if problems:
            raise ValueError("the processor does not match the model config: " + "; ".join(problems))

    def __call__(
        self,
        text: str | list[str] | None = None,
        videos=None,
        answers: str | list[str] | None = None,
        images=None,
        audio=None,
        **kwargs: Unpack[FoveatedProcessingKwargs],
    ) -> BatchFeature:
        """Tokenise prompts, expand each `<video>`, prepare the videos, truncate and pad the batch.

        Args:
            text: a prompt or a non-empty list of prompts (strings). With videos, each prompt holds exactly one
                `<video>` (the model reads one video per row): the i-th prompt's stands for the i-th video. The
                video's own tokens (`<video_start>`, `<frame>`, `<video_end>`) are the processor's to write: text
                holding them is an error.
            videos: one video or a list (see [`FoveatedVideoProcessor`] for what a video may be).
            answers: one caption or answer per prompt, appended after it with the end-of-sequence token; `labels`
                then hold their ids and -100 everywhere else (prompt, video tokens, padding). The prompt and the
                answer are tokenised separately, exactly as generation will see the prompt.
            images, audio: accepted for `apply_chat_template(tokenize=True)`; only videos are read.
            kwargs: transformers' processor options (`FoveatedProcessingKwargs`), flat or grouped in `text_kwargs` /
                `videos_kwargs`:
                - video: `num_frames`, `fps`, `max_frames` (sampling, overriding the video processor's settings),
                  `return_target_frames` (also `target_frames` `[B, T, 3, H, W]` in [-1, 1] for the targets),
                  `return_metadata` (also `video_metadata`, and the sampled `frame_indices` and `timestamps`,
                  seconds, per video), and the video processor's other call options; `do_sample_frames=False` is
                  refused (frames are always sampled);
                - text: `padding` (`True`/`"longest"`, the default; `"max_length"`; `False`), `padding_side`
                  (defaults to the tokenizer's), `truncation` with `max_length` (cuts the text on the tokenizer's
                  `truncation_side`, never the video's tokens: a row whose video would be cut is an error),
                  `pad_to_multiple_of`, `add_special_tokens`, `return_attention_mask`, `return_offsets_mapping`,
                  `return_mm_token_type_ids` (2 on video tokens, 0 on text), `return_text_replacement_offsets`;
                - `return_tensors`: `"pt"` (default) or `None` for lists.

        Returns:
            `BatchFeature` with `input_ids`, `attention_mask` (with the tokenizer's pad token or else its
            end-of-sequence token), `pixel_values_videos` `[B, T, 3, H, W]` when videos are given, and `labels` when
            answers are.
        """
        # The generic `ProcessorMixin.__call__` merges the options, checks the inputs (`validate_inputs`), runs the
        # video processor with one `replace_video_token` per video (`_process_videos`) and tokenises. It pads and
        # truncates inside the tokenizer call, which knows neither the answers appended after each prompt (their
        # labels must be cut and padded with their ids) nor the video's block (which a cut must never reach into), so
        # it tokenises here unpadded and uncut, and this wrapper does those two steps on the rows (as PaliGemma's
        # processor wraps the generic call to build its labels).
        if images is not None or audio is not None:
            raise ValueError(f"{type(self).__name__} reads videos only; got images or audio")
        unknown = sorted(set(kwargs) - accepted_keywords(self.video_processor))
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.__call__() got unexpected keyword arguments {unknown}; it takes text, videos, "
                "answers and transformers' processor options (text_kwargs / videos_kwargs keys)"
            )
        if answers is not None and text is None:
            raise ValueError("answers were given without text: each answer follows its prompt")
        options = self._merge_kwargs(
            FoveatedProcessingKwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs
        )
        text_kwargs = options["text_kwargs"]
        return_tensors = (text_kwargs if text is not None else options["videos_kwargs"]).get("return_tensors")
        layout = TextLayout.from_text_kwargs(text_kwargs, self.tokenizer)  # checked before any video is decoded
        if text is not None:
            text = _as_texts(text, "text")
            answers = self._check_answers(answers, len(text))
        videos_kwargs = dict(options["videos_kwargs"])
        return_metadata = videos_kwargs.pop("return_metadata", None)  # flat: the generic call keeps `video_metadata`
        inputs = super().__call__(
            text=text,
            videos=videos,
            return_metadata=return_metadata,
            **{
                **options,
                "videos_kwargs": videos_kwargs,
                "text_kwargs": {
                    "add_special_tokens": layout.add_special_tokens,
                    "return_offsets_mapping": layout.return_offsets_mapping,
                    "padding": False,
                    "truncation": False,
                    "return_tensors": None,
                },
                "return_mm_token_type_ids": False,  # marked on the rows, answers included
            },
        )
        data = dict(inputs)
        if text is None:
            return BatchFeature(data, tensor_type=return_tensors, skip_tensor_conversion=self.skip_tensor_conversion)
        rows = [{"input_ids": ids} for ids in data.pop("input_ids")]
        data.pop("attention_mask", None)  # all ones so far; padding writes it
        if layout.return_offsets_mapping:
            for row, spans in zip(rows, data.pop("offset_mapping"), strict=True):
                row["offset_mapping"] = [tuple(span) for span in spans]
        if answers is not None:
            self._append_answers(rows, text, answers, layout.return_offsets_mapping)
        if options["return_mm_token_type_ids"]:  # transformers' modality types: 0 text, 2 video (`video_token_ids`)
            types = self.create_mm_token_type_ids([row["input_ids"] for row in rows])
            for row, row_types in zip(rows, types, strict=True):
                row["mm_token_type_ids"] = row_types
        truncate_rows(rows, [self._video_block(row["input_ids"]) for row in rows], layout)
        data.update(pad_rows(rows, self._pad_values(rows, layout), layout))
        return BatchFeature(data, tensor_type=return_tensors, skip_tensor_conversion=self.skip_tensor_conversion)

    def validate_inputs(self, images=None, text=None, videos=None, audio=None, **kwargs) -> None:
        """The generic check (as many `<video>` as videos in all) made the model's: one `<video>` per prompt when
        there are videos, none of the video's own tokens written by hand; raise naming the prompt otherwise. Runs
        before any video is decoded."""
        num_videos = len(make_video_list(videos)) if videos is not None else 0
        if text is None:
            if videos is None:
                raise ValueError("pass text, videos or both")
            return
        placeholders = [sample.count(self.video_token) for sample in text]  # per prompt
        if sum(placeholders) != num_videos:
            raise ValueError(
                f"the text holds {sum(placeholders)} {self.video_token} placeholders but {num_videos} videos were "
                "given; write one placeholder per video"
            )
        if num_videos and placeholders != [1] * len(text):
            row = next(row for row, count in enumerate(placeholders) if count != 1)
            raise ValueError(
                f"text[{row}] holds {placeholders[row]} {self.video_token} placeholders; the model reads one video per "
                f"prompt, so with videos every prompt needs exactly one (got {len(text)} prompts for {num_videos} "
                "videos)"
            )
        check_no_video_tokens(text, "text", self.video_token)

    def _process_videos(self, videos, **videos_kwargs) -> tuple[dict, list[str]]:
        """Run the video processor with the merged video options it takes (refusing any other that is set), and
        expand each video's `<video>` with `replace_video_token`."""
        accepted = set(inspect.signature(self.video_processor.preprocess).parameters) - {"videos"}
        unsupported = {key: value for key, value in videos_kwargs.items() if key not in accepted and value is not None}
        if unsupported:
            raise ValueError(
                f"video options {reprlib.repr(unsupported)} are not supported by {type(self.video_processor).__name__}"
                f"; it takes {sorted(accepted)}"
            )
        video_list = make_video_list(videos)
        options = {key: value for key, value in videos_kwargs.items() if key in accepted}
        video_inputs = dict(self.video_processor(video_list, **options))
        return video_inputs, [self.replace_video_token(video_inputs, index) for index in range(len(video_list))]

    def replace_video_token(self, video_inputs: dict, video_idx: int, **kwargs) -> str:
        """What one `<video>` becomes: `<video_start>`, `<frame>` x (T*K), `<video_end>`, T this video's frames."""
        num_frames = len(video_inputs["pixel_values_videos"][video_idx])
        return expand_video_placeholders(self.video_token, num_frames, self.tokens_per_frame, self.video_token)

    def _video_block(self, ids: list[int]) -> tuple[int, int] | None:
        """First and last index of the row's video tokens (`<video_start>` .. `<video_end>`), or None."""
        if self.video_start_token_id not in ids:
            return None
        return ids.index(self.video_start_token_id), len(ids) - 1 - ids[::-1].index(self.video_end_token_id)

    def _pad_values(self, rows: list[dict], layout: TextLayout) -> dict:
        """What each per-token list is padded with; the pad token falls back to eos."""
        tokenizer = self.tokenizer
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        lengths = {len(row["input_ids"]) for row in rows}
        if pad_id is None and layout.padding != "do_not_pad" and (len(lengths) > 1 or layout.padding == "max_length"):
            raise ValueError("sequences need padding but the tokenizer has neither a pad nor an eos token")
        return {"input_ids": pad_id, "labels": IGNORE_INDEX, "offset_mapping": (0, 0), "mm_token_type_ids": 0}

    def _check_answers(self, answers, num_prompts: int) -> list[str] | None:
        """Answers as a list of strings, one per prompt and free of the video's tokens (they are labels)."""
        if answers is None:
            return None
        answers = _as_texts(answers, "answers")
        if len(answers) != num_prompts:
            raise ValueError(f"got {len(answers)} answers for {num_prompts} prompts; pass one answer per prompt")
        check_no_video_tokens(answers, "answers", self.video_token)
        return answers

    def apply_chat_template(self, conversation, *args, **kwargs):
        """`ProcessorMixin.apply_chat_template`, refusing content items the template cannot render (see
        `check_conversations`): only `{"type": "text", "text": ...}` and `{"type": "video", ...}` items.

        A turn's text is rendered before its video whatever the order of its items (the order the model was
        trained on); a video item written before a text item (SmolVLM2's habit) warns once that it was moved.
        `return_assistant_tokens_mask=True` (with `tokenize=True, return_dict=True`) marks the assistant turns.
        """
        check_conversations(conversation)
        if video_before_text(conversation):
            warnings.warn(
                "a chat turn lists a video item before its text: the foveated model reads the text first (the prompt "
                "steers where it looks), so the chat template puts the text before the video",
                UserWarning,
                stacklevel=2,
            )
        return super().apply_chat_template(conversation, *args, **kwargs)

    def _append_answers(self, rows: list[dict], texts: list[str], answers: list[str], offsets: bool) -> None:
        """Each row: prompt ids + answer ids + eos, in place; labels supervise the answer and eos only."""
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos_token, which ends every answer; set tokenizer.eos_token")
        encoded = self.tokenizer(answers, add_special_tokens=False, return_offsets_mapping=offsets)
        for index, (row, answer) in enumerate(zip(rows, encoded["input_ids"], strict=True)):
            row["labels"] = [IGNORE_INDEX] * len(row["input_ids"]) + answer + [eos]
            row["input_ids"] = row["input_ids"] + answer + [eos]
            if offsets:  # the answer's characters follow the prompt's; eos stands for no text
                shift = len(texts[index])
                spans = [(start + shift, end + shift) for start, end in encoded["offset_mapping"][index]]
                row["offset_mapping"] = row["offset_mapping"] + spans + [(0, 0)]

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values_videos"]
