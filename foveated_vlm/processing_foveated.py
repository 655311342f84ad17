"""Processor of the foveated VLM: text with `<video>` placeholders and videos -> model inputs (and caption labels).

Follows transformers' LLaVA and SmolVLM processors (`models/llava/processing_llava.py`,
`models/smolvlm/processing_smolvlm.py`): a `ProcessorMixin` whose sub-processors are its `__init__` arguments (a
`FoveatedVideoProcessor` and the language model's tokenizer), one placeholder in user text expanded by one pure
function, `expand_video_placeholders`, into exactly the layout the model checks,

    <video>  ->  <video_start> <frame> x (T * K) <video_end>        (K = tokens_per_frame)

and a `BatchFeature` out. Captions are supervised with `answers=`: each answer (and the end-of-sequence token) is
appended to its prompt and only those tokens get labels; everything else is -100. The chat template is
SmolLM2-Instruct's (`<|im_start|>role\\n...<|im_end|>\\n`) where a `{"type": "video"}` content item renders as
`<video>` (text and video are the only content items: any other, such as `{"type": "image"}`, is an error rather
than silently left out of the prompt):

    prompt = processor.apply_chat_template(  # the prompt before the video: queries are planned from what precedes
        [{"role": "user", "content": [{"type": "text", "text": "Describe the video."}, {"type": "video"}]}],
        add_generation_prompt=True,
    )
    batch = processor(text=[prompt], videos=["clip.mp4"], answers=["A red ball rolls."])   # training
    batch = processor(text=[prompt], videos=["clip.mp4"])                                  # generation
"""

import reprlib

from transformers.image_processing_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.video_processing_utils import VideoProcessorMixin

from .modeling_foveated import VIDEO_TOKENS
from .video_processing_foveated import FoveatedVideoProcessor, make_video_list

__all__ = ["FoveatedVLMProcessor", "expand_video_placeholders", "CHAT_TEMPLATE", "VIDEO_PLACEHOLDER"]

VIDEO_PLACEHOLDER = "<video>"
IGNORE_INDEX = -100  # positions the caption loss skips
CONTENT_TYPES = ("text", "video")  # the chat content items the template renders; it would drop any other silently

# SmolLM2-135M-Instruct's template (with its default system prompt), extended with list contents whose
# `{"type": "video"}` items become the placeholder; an item followed by more content ends its line.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'video' %}{{ '<video>' }}{% if not loop.last %}{{ '\n' }}{% endif %}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% if not loop.last %}{{ '\n' }}{% endif %}"
    "{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def expand_video_placeholders(
    text: str, num_frames, tokens_per_frame: int = 1, placeholder: str = VIDEO_PLACEHOLDER
) -> str:
    """Replace each `placeholder` in `text` by `<video_start>`, `<frame>` x (T*K), `<video_end>`.

    `num_frames` is T for every video in the text (an int) or one T per placeholder, in order. This is the one
    place the video's token layout is written; the model checks the same count (T*K frame tokens after each
    `<video_start>`) and raises when it differs.
    """
    pieces = text.split(placeholder)
    counts = [num_frames] * (len(pieces) - 1) if isinstance(num_frames, int) else list(num_frames)
    if len(counts) != len(pieces) - 1:
        raise ValueError(
            f"the text holds {len(pieces) - 1} {placeholder} placeholders but {len(counts)} frame counts were given"
        )
    if tokens_per_frame < 1 or any(count < 1 for count in counts):
        raise ValueError(f"need frame counts >= 1 and tokens_per_frame >= 1; got {counts} and {tokens_per_frame}")
    expanded = [pieces[0]]
    for count, piece in zip(counts, pieces[1:], strict=True):
        frames = VIDEO_TOKENS["frame"] * (count * tokens_per_frame)
        expanded += [VIDEO_TOKENS["video_start"], frames, VIDEO_TOKENS["video_end"], piece]
    return "".join(expanded)


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
    """

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
        tokenizer.add_tokens(list(VIDEO_TOKENS.values()), special_tokens=True)
        ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in VIDEO_TOKENS.items()}
        self.video_start_token_id, self.frame_token_id, self.video_end_token_id = (
            ids["video_start"],
            ids["frame"],
            ids["video_end"],
        )

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
        `video_kwargs` go to [`FoveatedVideoProcessor`] (`num_frames`, `fps`, `resize_mode`, ...).
        """
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
            "frame size": (self.video_processor.size, config.frame_size),
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
        num_frames: int | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
        return_target_frames: bool = False,
        return_metadata: bool = False,
        add_special_tokens: bool = True,
        return_tensors: str | None = "pt",
        images=None,
        audio=None,
        do_sample_frames: bool = True,
    ) -> BatchFeature:
        """Tokenise prompts, expand each `<video>`, prepare the videos and pad the batch.

        Args:
            text: a prompt or a non-empty list of prompts (strings). With videos, each prompt holds exactly one
                `<video>` (the model reads one video per row): the i-th prompt's stands for the i-th video.
            videos: one video or a list (see [`FoveatedVideoProcessor`] for what a video may be).
            answers: one caption or answer per prompt, appended after it with the end-of-sequence token; `labels`
                then hold their ids and -100 everywhere else (prompt, video tokens, padding). The prompt and the
                answer are tokenised separately, exactly as generation will see the prompt.
            num_frames, fps, max_frames: frame sampling, overriding the video processor's settings.
            return_target_frames: also return `target_frames` `[B, T, 3, H, W]` in [-1, 1] for the targets.
            return_metadata: also return the sampled `frame_indices` and `timestamps` (seconds) per video.
            add_special_tokens: passed to the tokenizer for the prompts.
            return_tensors: `"pt"` (default) or `None` for lists.
            images, audio, do_sample_frames: accepted for `apply_chat_template(tokenize=True)`; only videos are
                read and frames are always sampled.

        Returns:
            `BatchFeature` with `input_ids`, `attention_mask` (padded on the tokenizer's `padding_side`, with its pad
            token or else its end-of-sequence token), `pixel_values_videos` `[B, T, 3, H, W]` when videos are
            given, and `labels` when answers are.
        """
        if images is not None or audio is not None:
            raise ValueError(f"{type(self).__name__} reads videos only; got images or audio")
        if not do_sample_frames:
            raise ValueError("the foveated processor always samples frames; set num_frames or fps instead")
        if text is None and videos is None:
            raise ValueError("pass text, videos or both")
        if answers is not None and text is None:
            raise ValueError("answers were given without text: each answer follows its prompt")
        video_list = make_video_list(videos) if videos is not None else []
        if text is not None:  # checked before any video is decoded
            texts, answers = self._check_text(text, answers, len(video_list))
        data = {}
        frame_counts = []  # T of each video, in order
        if video_list:
            video_inputs = self.video_processor(
                video_list,
                num_frames=num_frames,
                fps=fps,
                max_frames=max_frames,
                return_target_frames=return_target_frames,
                return_tensors=return_tensors,
            )
            if not return_metadata:
                video_inputs.pop("frame_indices")
                video_inputs.pop("timestamps")
            data.update(video_inputs)
            frame_counts = [len(frames) for frames in video_inputs["pixel_values_videos"]]
        if text is None:
            return BatchFeature(data, tensor_type=return_tensors)

        # One video per prompt, or none at all: the i-th prompt's <video> is the i-th video.
        per_prompt = [[count] for count in frame_counts] if video_list else [[]] * len(texts)
        expanded = [
            expand_video_placeholders(sample, counts, self.tokens_per_frame, self.video_token)
            for sample, counts in zip(texts, per_prompt, strict=True)
        ]
        input_ids = self.tokenizer(expanded, add_special_tokens=add_special_tokens)["input_ids"]
        labels = None
        if answers is not None:
            input_ids, labels = self._append_answers(input_ids, answers)
        data.update(self._pad(input_ids, labels))
        return BatchFeature(data, tensor_type=return_tensors)

    def _check_text(self, text, answers, num_videos: int) -> tuple[list[str], list[str] | None]:
        """Prompts and answers as lists of strings, one answer per prompt and each prompt holding one `<video>` when
        there are videos (the model reads one video per row); raise naming the prompt otherwise."""
        texts = _as_texts(text, "text")
        if answers is not None:
            answers = _as_texts(answers, "answers")
            if len(answers) != len(texts):
                raise ValueError(f"got {len(answers)} answers for {len(texts)} prompts; pass one answer per prompt")
        placeholders = [sample.count(self.video_token) for sample in texts]  # per prompt
        if sum(placeholders) != num_videos:
            raise ValueError(
                f"the text holds {sum(placeholders)} {self.video_token} placeholders but {num_videos} videos were "
                "given; write one placeholder per video"
            )
        if num_videos and placeholders != [1] * len(texts):
            row = next(row for row, count in enumerate(placeholders) if count != 1)
            raise ValueError(
                f"text[{row}] holds {placeholders[row]} {self.video_token} placeholders; the model reads one video per "
                f"prompt, so with videos every prompt needs exactly one (got {len(texts)} prompts for {num_videos} "
                "videos)"
            )
        return texts, answers

    def apply_chat_template(self, conversation, *args, **kwargs):
        """`ProcessorMixin.apply_chat_template`, refusing content items the template cannot render (see
        `check_conversations`): only `{"type": "text", "text": ...}` and `{"type": "video", ...}` items."""
        check_conversations(conversation)
        return super().apply_chat_template(conversation, *args, **kwargs)

    def _append_answers(self, prompt_ids: list[list[int]], answers: list[str]):
        """Prompt ids + answer ids + eos; labels supervise the answer and eos only."""
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos_token, which ends every answer; set tokenizer.eos_token")
        answer_ids = self.tokenizer(answers, add_special_tokens=False)["input_ids"]
        input_ids, labels = [], []
        for prompt, answer in zip(prompt_ids, answer_ids, strict=True):
            input_ids.append(prompt + answer + [eos])
            labels.append([IGNORE_INDEX] * len(prompt) + answer + [eos])
        return input_ids, labels

    def _pad(self, input_ids: list[list[int]], labels: list[list[int]] | None) -> dict:
        """Pad to the longest sequence on the tokenizer's side; the pad token falls back to eos."""
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        longest = max(len(ids) for ids in input_ids)
        if pad_id is None and any(len(ids) < longest for ids in input_ids):
            raise ValueError("sequences differ in length but the tokenizer has neither a pad nor an eos token")
        left = self.tokenizer.padding_side == "left"

        def pad(sequence, value):
            filler = [value] * (longest - len(sequence))
            return filler + sequence if left else sequence + filler

        padded = {
            "input_ids": [pad(ids, pad_id) for ids in input_ids],
            "attention_mask": [pad([1] * len(ids), 0) for ids in input_ids],
        }
        if labels is not None:
            padded["labels"] = [pad(sequence, IGNORE_INDEX) for sequence in labels]
        return padded

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values_videos"]
