"""Hostile input to the model, the stream and the processor: a clear error at the entry that names the input, the
value and what was expected, never a silent result (NaN losses, a language model run past its positions, uint8
frames read as normalised ones, chat items dropped from the prompt) or a traceback from deep inside."""

import pytest
import torch
from test_processing import make_processor, random_video
from test_video_processing import write_video
from tiny import tiny_batch, tiny_config, tiny_text_config
from transformers import DynamicCache

from foveated_vlm import FoveatedVLMForConditionalGeneration
from foveated_vlm.input_checks import InputChecks

VOCAB = 64  # tiny.VOCAB


def make_model(**text_overrides):
    config = tiny_config(text_config=tiny_text_config(**text_overrides))
    return FoveatedVLMForConditionalGeneration(config).eval(), config


def prompt_before_the_caption(batch):
    return batch["input_ids"][:, :-4]  # prompt, <video_start>, frames, <video_end>: what generate continues


# ---------------------------------------------------------------------------------------------------- model
def test_a_batch_of_no_rows_is_refused():
    model, config = make_model()
    empty = {name: value[:0] for name, value in tiny_batch(config).items()}
    with pytest.raises(ValueError, match=r"input_ids has shape \(0, 13\); expected at least one row"):
        model(**empty)


@pytest.mark.parametrize("bad_id", [-1, VOCAB, VOCAB + 1000])
def test_token_ids_outside_the_vocabulary(bad_id):
    model, config = make_model()
    batch = tiny_batch(config)
    batch["input_ids"][1, 2] = bad_id
    with pytest.raises(ValueError, match=rf"input_ids\[1, 2\] = {bad_id} is not a token id.*\[0, {VOCAB}\)"):
        model(**batch)
    with pytest.raises(ValueError, match=rf"input_ids\[1, 2\] = {bad_id} is not a token id"):
        model.generate(
            input_ids=prompt_before_the_caption(batch),
            pixel_values_videos=batch["pixel_values_videos"],
            max_new_tokens=2,
        )
    labels = tiny_batch(config)
    labels["labels"][0, -1] = bad_id  # -100 is the one id outside the vocabulary that labels may hold
    with pytest.raises(ValueError, match=rf"labels\[0, 12\] = {bad_id} is not a token id.*or -100"):
        model(**labels)


def test_a_sequence_past_max_position_embeddings_is_refused():
    model, config = make_model(max_position_embeddings=16)
    fits, too_long = tiny_batch(config, frames=7), tiny_batch(config, frames=8)  # 16 and 17 tokens
    assert torch.isfinite(model(**fits).loss)
    with pytest.raises(ValueError, match="input_ids hold 17 tokens, past the language model's max_position_emb"):
        model(**too_long)
    # With a cache, what it holds counts too.
    cache = DynamicCache(config=config.text_config)
    model(input_ids=torch.randint(1, 60, (1, 10)), past_key_values=cache, use_cache=True)
    with pytest.raises(ValueError, match=r"input_ids hold 7 tokens after 10 cached \(17\), past"):
        model(input_ids=torch.randint(1, 60, (1, 7)), past_key_values=cache, use_cache=True)


def test_generate_past_max_position_embeddings_is_refused_before_any_step():
    model, config = make_model(max_position_embeddings=16)
    batch = tiny_batch(config, batch=1, frames=3)
    ids, pixels = prompt_before_the_caption(batch), batch["pixel_values_videos"]  # 8 tokens
    kwargs = dict(input_ids=ids, pixel_values_videos=pixels, do_sample=False)
    longest = model.generate(**kwargs, max_new_tokens=8, min_new_tokens=8)
    assert longest.shape == (1, 16)  # up to the limit is fine
    with pytest.raises(ValueError, match=r"reach 17 tokens \(input_ids hold 8, max_new_tokens=9\).*at most 8 new"):
        model.generate(**kwargs, max_new_tokens=9)
    with pytest.raises(ValueError, match=r"reach 40 tokens \(input_ids hold 8, max_length=40\)"):
        model.generate(**kwargs, max_length=40)
    with pytest.raises(ValueError, match=r"reach 28 tokens \(input_ids hold 8, max_new_tokens=20\)"):
        model.generate(**kwargs)  # transformers' default: 20 new tokens
    stream = model.stream()  # the stream's caption goes through the same generate
    stream.push(pixels[:, 0])
    with pytest.raises(ValueError, match=r"reach 23 tokens \(input_ids hold 3, max_new_tokens=20\)"):
        stream.generate(max_new_tokens=20)


def test_an_all_zero_attention_mask_row_is_refused():
    model, config = make_model()
    batch = tiny_batch(config)
    batch["attention_mask"][1] = 0
    with pytest.raises(ValueError, match="attention_mask row 1 is all zeros"):
        model(**batch)


def test_integer_pixels_are_refused():
    model, config = make_model()
    batch = tiny_batch(config)
    batch["pixel_values_videos"] = (batch["pixel_values_videos"].clamp(-1, 1) * 127 + 128).to(torch.uint8)
    with pytest.raises(ValueError, match="pixel_values_videos has dtype torch.uint8; expected floating-point frames"):
        model(**batch)
    with pytest.raises(ValueError, match="frame has dtype torch.uint8"):
        model.stream(batch_size=2).push(batch["pixel_values_videos"][:, 0])


@pytest.mark.parametrize("size", [40, 48])  # both multiples of the patch, which the vision encoder would read
def test_frames_of_another_size_are_refused(size):
    model, config = make_model()
    batch = tiny_batch(config)
    batch["pixel_values_videos"] = torch.randn(2, 4, 3, size, size)
    batch["target_latents"] = None
    with pytest.raises(ValueError, match=f"frames of {size}x{size} pixels, but the model reads 32x32 frames"):
        model(**batch)
    with pytest.raises(ValueError, match=f"frame: frames of {size}x{size} pixels"):
        model.stream(batch_size=2).push(batch["pixel_values_videos"][:, 0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("name", ["pixel_values_videos", "target_latents"])
def test_non_finite_frames_and_targets_are_refused(name, value, dtype):
    model, config = make_model()
    model.to(dtype)
    batch = tiny_batch(config)
    for key in ("pixel_values_videos", "target_latents"):
        batch[key] = batch[key].to(dtype)
    batch[name][1, 2, 0, 3, 4] = value
    with pytest.raises(ValueError, match=rf"{name} holds 1 NaN/inf values, the first {name}\[1, 2, 0, 3, 4\] = "):
        model(**batch)
    stream_input = {"frame": batch["pixel_values_videos"][:, 2], "target_latent": batch["target_latents"][:, 2]}
    stream_name = {"pixel_values_videos": "frame", "target_latents": "target_latent"}[name]
    with pytest.raises(ValueError, match=rf"{stream_name} holds 1 NaN/inf values"):
        model.stream(batch_size=2).push(stream_input["frame"], stream_input["target_latent"])


def test_stream_text_outside_the_vocabulary():
    model, _ = make_model()
    with pytest.raises(ValueError, match=rf"input_ids\[0, 1\] = {VOCAB} is not a token id"):
        model.stream(input_ids=torch.tensor([[5, VOCAB]]))
    stream = model.stream()
    stream.push(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"input_ids\[0, 0\] = -1 is not a token id"):
        stream.generate(input_ids=torch.tensor([[-1]]), max_new_tokens=2)


def test_values_are_read_back_once_per_call_and_not_on_cached_decoding_steps(monkeypatch):
    """On an accelerator each read-back is a synchronisation: the prefill reads all its checks back in one go, and
    the cached decoding steps (one token the model chose itself, no pixels) read nothing back."""
    model, config = make_model()
    batch = tiny_batch(config)
    read_backs = []  # checks read back by each call of InputChecks.run
    original = InputChecks.run
    monkeypatch.setattr(InputChecks, "run", lambda self: (read_backs.append(len(self._pending)), original(self))[1])
    mask = batch["attention_mask"][:, :-4].clone()
    mask[0, 0] = 0  # a padded row, so that generate keeps the mask (it drops one of all ones)
    model.generate(
        input_ids=prompt_before_the_caption(batch),
        attention_mask=mask,
        pixel_values_videos=batch["pixel_values_videos"],
        max_new_tokens=5,
        min_new_tokens=5,
    )
    assert read_backs == [3, 0, 0, 0, 0]  # ids, mask and pixels in the prefill's one read-back, then none
    read_backs.clear()
    model(**batch)
    assert read_backs == [5]  # ids, mask, labels, pixels and targets: one read-back for the whole forward


def test_value_checks_do_not_break_a_compiled_graph():
    """Under torch.compile the value checks step aside (a read-back would break the graph); shape checks stay."""

    def checked(frames):
        checks = InputChecks()
        checks.frames(frames, 32, name="frames")
        checks.run()
        return frames * 2

    frames = torch.ones(1, 3, 32, 32)
    frames[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"frames holds 1 NaN/inf values, the first frames\[0, 1, 2, 3\] = nan"):
        checked(frames)
    compiled = torch.compile(checked, backend="eager", fullgraph=True)  # fullgraph: a read-back would be an error
    assert compiled(frames).isnan().sum() == 1


# ------------------------------------------------------------------------------------------------ processor
@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ([], ValueError, "text is an empty list; expected at least one string"),
        ([None], TypeError, r"text\[0\] is None \(NoneType\); expected a string"),
        (["<video> a", 5], TypeError, r"text\[1\] is 5 \(int\); expected a string"),
        (5, TypeError, r"text must be a string or a list of strings; got 5 \(int\)"),
        (b"<video> a", TypeError, r"text must be a string or a list of strings; got b'<video> a' \(bytes\)"),
        ([b"<video> a"], TypeError, r"text\[0\] is b'<video> a' \(bytes\); expected a string"),
    ],
)
def test_text_that_is_not_a_list_of_strings(text, error, message):
    processor = make_processor()
    with pytest.raises(error, match=message):
        processor(text=text)
    with pytest.raises(error, match=message):
        processor(text=text, videos=[random_video()])


def test_answers_that_are_not_strings_or_have_no_prompt():
    processor = make_processor()
    with pytest.raises(TypeError, match=r"answers\[0\] is None \(NoneType\); expected a string"):
        processor(text=["<video> a"], videos=[random_video()], answers=[None])
    with pytest.raises(ValueError, match="answers were given without text"):
        processor(videos=[random_video()], answers=["a red ball"])


@pytest.mark.parametrize(
    ("text", "videos", "message"),
    [
        (["<video><video> a"], 2, r"text\[0\] holds 2 <video> placeholders; the model reads one video per prompt"),
        (["<video> a", "b"], 1, r"text\[1\] holds 0 <video> placeholders.*\(got 2 prompts for 1 videos\)"),
        (["<video> a", "<video> b"], 1, "the text holds 2 <video> placeholders but 1 videos were given"),
        (["a <video> b"], 2, "the text holds 1 <video> placeholders but 2 videos were given"),
    ],
)
def test_prompts_and_videos_that_do_not_pair_up(tmp_path, text, videos, message):
    """Checked before any video is decoded: the clips here are real mp4 files."""
    processor = make_processor()
    paths = [str(write_video(tmp_path / f"clip{i}.mp4", 8)) for i in range(videos)]
    with pytest.raises(ValueError, match=message):
        processor(text=text, videos=paths)
    # A file that is not there shows the order: the text is refused before the video would be read.
    with pytest.raises(ValueError, match=message):
        processor(text=text, videos=[str(tmp_path / "missing.mp4")] * videos)


IMAGE_AND_TEXT = [{"role": "user", "content": [{"type": "text", "text": "Describe"}, {"type": "image"}]}]


@pytest.mark.parametrize(
    "item",
    [{"type": "image"}, {"type": "image_url", "image_url": {"url": "x.png"}}, {"type": "audio"}, {"type": "gif"}]
    + [{"text": "no type"}, {"type": "text", "text": 5}, {"type": "text"}, "a bare string"],
)
def test_chat_items_the_processor_does_not_read(item):
    processor = make_processor()
    conversation = [{"role": "user", "content": [{"type": "text", "text": "Describe"}, item]}]
    with pytest.raises(ValueError, match=r"conversation\[0\]\['content'\]\[1\] = .* is not supported"):
        processor.apply_chat_template(conversation, add_generation_prompt=True)
    fine = [{"role": "user", "content": [{"type": "text", "text": "Describe"}, {"type": "video"}]}]
    with pytest.raises(ValueError, match=r"conversation\[1\]\[0\]\['content'\]\[1\] = .* is not supported"):
        processor.apply_chat_template([fine, conversation])


def test_chat_with_an_image_and_a_real_video_is_refused_when_tokenized(tmp_path):
    processor = make_processor()
    path = str(write_video(tmp_path / "clip.mp4", 8))
    conversation = [
        {"role": "user", "content": [{"type": "video", "path": path}, {"type": "image", "path": path}]},
    ]
    with pytest.raises(ValueError, match=r"conversation\[0\]\['content'\]\[1\] = .*'image'.* is not supported"):
        processor.apply_chat_template(conversation, tokenize=True, return_dict=True)
    fine = [{"role": "user", "content": [{"type": "text", "text": "Describe"}, {"type": "video", "path": path}]}]
    batch = processor.apply_chat_template(fine, add_generation_prompt=True, tokenize=True, return_dict=True)
    assert batch["pixel_values_videos"].shape == (1, 4, 3, 32, 32)


@pytest.mark.parametrize(
    ("conversation", "message"),
    [
        ([], r"conversation must be a non-empty list of messages; got \[\] \(list\)"),
        ({"role": "user", "content": "hi"}, "conversation must be a non-empty list of messages"),
        ([{"content": "hi"}], r"conversation\[0\] = .*; expected a message \{'role': str, 'content': \.\.\.\}"),
        ([{"role": "user", "content": 5}], r"conversation\[0\]\['content'\] is 5 \(int\); expected a string or a list"),
    ],
)
def test_conversations_that_are_not_lists_of_messages(conversation, message):
    with pytest.raises(ValueError, match=message):
        make_processor().apply_chat_template(conversation)
