"""The lmms-eval adapter (`foveated_vlm/lmms_eval_model.py`): found through lmms-eval's entry points, run end to end
by lmms-eval's own command line on local tasks over PyAV-written videos, and equal to the model called directly."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from lmms_eval.api.instance import Instance
from lmms_eval.models import get_model
from test_cli import save_checkpoint
from test_video_processing import write_video

from foveated_vlm.evaluation.lmms_eval_model import FoveatedVLMLmms
from foveated_vlm.training.data_collator import chat_prompt

QUESTIONS = ["a red ball rolls", "a blue cube falls"]
OPTIONS = ["red", "blue"]
UNTIL = "t a"  # a stop string inside the tiny model's greedy text ("assistant assistant ...")
NEW_TOKENS = 3

# The tasks' `!function` hooks: lmms-eval imports this file from the folder given to --include_path.
TASK_UTILS = """
import os

def doc_to_visual(doc):
    return [os.path.join(os.path.dirname(os.path.abspath(__file__)), "videos", doc["video"])]

def doc_to_text(doc):
    return doc["question"] + " ?"

def doc_to_choice(doc):
    return doc["options"]
"""

TASK_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files: {{test: {data}}}
  cache_dir: {cache}
test_split: test
output_type: {output_type}
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
"""

GENERATE = f"""doc_to_target: "answer"
generation_kwargs:
  until: ["{UNTIL}"]
  max_new_tokens: {NEW_TOKENS}
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""

CHOICE = """doc_to_target: "label"
doc_to_choice: !function utils.doc_to_choice
metric_list:
  - metric: acc
"""


@torch.no_grad()
def direct_log_prob(model, processor, prompt: str, video, continuation: str) -> float:
    """log P(continuation | prompt, video) from the model's own caption loss: the processor's `answers` route
    (labels on the answer only), without the end-of-sequence token it appends."""
    batch = processor(text=[chat_prompt(processor, prompt)], videos=[video], answers=[continuation], num_frames=4)
    ids, labels = batch["input_ids"][:, :-1], batch["labels"][:, :-1]  # drop the appended eos
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values_videos=batch["pixel_values_videos"],
                labels=labels)  # fmt: skip
    return -float(out.caption_loss_fine) * int((labels != -100).sum())  # the loss is the mean over those tokens


@torch.no_grad()
def direct_generate(model, processor, prompt: str, video, max_new_tokens: int) -> tuple[str, list[int]]:
    batch = processor(text=[chat_prompt(processor, prompt)], videos=[video], num_frames=4)
    ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)[0, batch["input_ids"].shape[1] :]
    return processor.tokenizer.decode(ids, skip_special_tokens=True), ids.tolist()


def request(kind: str, context: str, second, doc_id: int, task: str = "t") -> Instance:
    """An Instance as lmms-eval's tasks build them: (context, gen_kwargs or continuation, doc_to_visual, doc_id,
    task, split)."""
    visual = lambda doc: [doc["video"]]  # noqa: E731
    metadata = {"task": task, "doc_id": doc_id, "repeats": 1}
    return Instance(kind, arguments=(context, second, visual, doc_id, task, "test"), idx=0, metadata=metadata)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)  # the tiny model's weights, hence its answers, are the same on every run
    return save_checkpoint(tmp_path_factory.mktemp("checkpoint"))


@pytest.fixture(scope="module")
def adapter(checkpoint):
    return FoveatedVLMLmms(pretrained=str(checkpoint), num_frames="4", device="cpu")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    return [str(write_video(root / f"clip{index}.mp4", num_frames=8 + 4 * index)) for index in range(len(QUESTIONS))]


@pytest.fixture
def docs(adapter, videos):
    adapter.task_dict = {"t": {"test": [{"video": video} for video in videos]}}
    return adapter.task_dict["t"]["test"]


def test_lmms_eval_finds_the_adapter_through_its_entry_points():
    assert get_model("foveated_vlm") is FoveatedVLMLmms


def test_loglikelihood_is_the_models_own_log_probability(adapter, docs, videos, monkeypatch):
    requests = [
        request("loglikelihood", q + " ?", " " + option, i) for i, q in enumerate(QUESTIONS) for option in OPTIONS
    ]
    encoder, passes = adapter.model.foveated_encoder, []
    encode = type(encoder).encode_patches
    monkeypatch.setattr(
        type(encoder), "encode_patches", lambda self, *a, **k: passes.append(1) or encode(self, *a, **k)
    )
    results = [result.text for result in adapter.loglikelihood(requests)]
    assert len(passes) == len(QUESTIONS), "the options of one doc share its video's patch pass"
    monkeypatch.setattr(type(encoder), "encode_patches", encode)
    expected = [
        -direct_log_prob(adapter.model, adapter.processor, q + " ?", video, " " + option)
        for q, video in zip(QUESTIONS, videos, strict=True)
        for option in OPTIONS
    ]
    assert [nll for nll, _ in results] == pytest.approx(expected, rel=1e-5)
    assert all(nll > 0 for nll, _ in results)  # minus a log-probability: lmms-eval picks the lowest


def test_loglikelihood_says_whether_the_continuation_is_greedy(adapter, docs, videos):
    _, (greedy_id,) = direct_generate(adapter.model, adapter.processor, QUESTIONS[0] + " ?", videos[0], 1)
    greedy = adapter.tokenizer.convert_ids_to_tokens(greedy_id)
    other = next(word for word in OPTIONS if adapter.tokenizer.convert_tokens_to_ids(word) != greedy_id)
    results = adapter.loglikelihood(
        [request("loglikelihood", QUESTIONS[0] + " ?", " " + word, 0) for word in (greedy, other)]
    )
    assert [result.text[1] for result in results] == [True, False]


def test_generate_until_is_the_models_greedy_text_cut_at_until(adapter, docs, videos):
    for max_new_tokens in (1, NEW_TOKENS):
        text, _ = direct_generate(adapter.model, adapter.processor, QUESTIONS[1] + " ?", videos[1], max_new_tokens)
        kwargs = {"max_new_tokens": max_new_tokens, "until": []}
        assert adapter.generate_until([request("generate_until", QUESTIONS[1] + " ?", kwargs, 1)]) == [text.strip()]
    assert UNTIL in text  # so the cut below is a real one
    kwargs = {"max_new_tokens": NEW_TOKENS, "until": [UNTIL, "no such text"]}
    assert adapter.generate_until([request("generate_until", QUESTIONS[1] + " ?", kwargs, 1)]) == [text.split(UNTIL)[0]]


def test_unreadable_or_missing_videos_and_long_prompts_are_skipped_and_counted(adapter, videos, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    adapter.task_dict = {"t": {"test": [{"video": str(tmp_path / "missing.mp4")}, {"video": str(broken)},
                                        {"video": videos[0]}]}}  # fmt: skip
    before = adapter.counts.succeeded, sum(adapter.counts.skipped.values())
    prompt = chat_prompt(adapter.processor, "a red ball ?")
    length = adapter.processor(text=[prompt], videos=[videos[0]], num_frames=4)["input_ids"].shape[1]
    too_long = "a red ball ?" + " red" * (adapter.max_positions - length)  # every position taken: none to generate
    kwargs = {"max_new_tokens": 2, "until": []}
    texts = adapter.generate_until(
        [request("generate_until", "a red ball ?", kwargs, doc) for doc in (0, 1)]
        + [request("generate_until", too_long, kwargs, 2), request("generate_until", "a red ball ?", kwargs, 2)]
    )
    assert texts[:3] == ["", "", ""] and texts[3] != ""  # the good request after the bad ones is still answered
    scores = adapter.loglikelihood([request("loglikelihood", "a red ball ?", " red", 0)])
    assert scores[0].text == (float("inf"), False)  # never the option chosen
    assert adapter.counts.succeeded - before[0] == 1
    assert sum(adapter.counts.skipped.values()) - before[1] == 4
    assert {"request_video_decode_error", "request_sequence_too_long"} <= set(adapter.counts.skipped)


@pytest.mark.parametrize(
    "args, message",
    [
        ({"dtype": "float64"}, "dtype='float64'"),
        ({"num_frames": "0"}, "num_frames='0'"),
        ({"batch_size": "8"}, "batch_size='8'"),
    ],
)
def test_bad_model_args_are_named(checkpoint, args, message):
    with pytest.raises(ValueError, match=message):
        FoveatedVLMLmms(pretrained=str(checkpoint), **args)


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(OSError, match="pretrained="):
        FoveatedVLMLmms(pretrained=str(tmp_path / "nothing"))


def test_lmms_eval_command_line_runs_local_tasks_end_to_end(adapter, videos, tmp_path):
    """`python -m lmms_eval --model foveated_vlm` on a generation task and a multiple-choice task, over a local json
    dataset whose answers are the model's own direct outputs: both scores are 1.0 only if the adapter gives the
    model's greedy text and lmms-eval chooses the model's likeliest option (a sign error would give acc 0.0)."""
    root = tmp_path / "tasks"
    (root / "videos").mkdir(parents=True)
    rows = []
    for index, (question, video) in enumerate(zip(QUESTIONS, videos, strict=True)):
        shutil.copy(video, root / "videos" / f"clip{index}.mp4")
        log_probs = [
            direct_log_prob(adapter.model, adapter.processor, question + " ?", video, " " + o) for o in OPTIONS
        ]
        text, _ = direct_generate(adapter.model, adapter.processor, question + " ?", video, NEW_TOKENS)
        rows.append({"video": f"clip{index}.mp4", "question": question, "options": OPTIONS,
                     "label": log_probs.index(max(log_probs)), "answer": text.split(UNTIL)[0].strip()})  # fmt: skip
    (root / "docs.json").write_text("\n".join(json.dumps(row) for row in rows))
    (root / "utils.py").write_text(TASK_UTILS)
    for name, output_type, extra in (("tiny_video_gen", "generate_until", GENERATE),
                                     ("tiny_video_mc", "multiple_choice", CHOICE)):  # fmt: skip
        yaml = TASK_YAML.format(
            name=name, data=root / "docs.json", cache=tmp_path / "datasets_cache", output_type=output_type
        )
        (root / f"{name}.yaml").write_text(yaml + extra)
    out = tmp_path / "results"
    command = [
        os.path.join(os.path.dirname(sys.executable), "lmms-eval"), "--model", "foveated_vlm",  # the installed script
        "--model_args", f"pretrained={adapter.pretrained},num_frames=4", "--tasks", "tiny_video_gen,tiny_video_mc",
        "--include_path", str(root), "--batch_size", "1", "--device", "cpu", "--output_path", str(out),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    (results_file,) = out.rglob("*_results.json")  # lmms-eval exits 0 even when the evaluation failed
    results = json.loads(results_file.read_text())["results"]
    assert results["tiny_video_gen"]["exact_match,none"] == 1.0, run.stdout[-3000:]
    assert results["tiny_video_mc"]["acc,none"] == 1.0, run.stdout[-3000:]
