"""MVBench and Video-MME in their published layouts: rows to score, and the prompts their own evaluations use.

    MVBench (`OpenGVLab/MVBench` on the Hub, a dataset repository):
        DIR/json/<task>.json            [{"video": "...", "question": "...", "candidates": [...], "answer": "..."}]
        DIR/video/<source>/<video>      the task's videos (the repository's `video/*.zip`, unzipped in place);
                                        DIR/<source>/<video>, lmms-eval's cache layout, is read too
    Video-MME (`lmms-lab/Video-MME`):
        DIR/videomme/test-00000-of-00001.parquet   videoID, question_id, duration (short/medium/long), domain,
                                                   sub_category, task_type, question, options ["A. ...", ...], answer
        DIR/data/<videoID>.mp4                     (the repository's `videos_chunked_*.zip`, unzipped in place)

`load_benchmark` yields `BenchmarkItem`s (video path, question, options, answer letter, metadata); a row whose video
is missing, or that is malformed (a field absent or of the wrong type, an answer that is not one of the options), is
skipped and counted in the `SampleCounts` it is given, never fatal. Only files under DIR are read.
`benchmark_prompt` writes an item as its benchmark's evaluation asks it; `video_benchmark_scoring`
scores the answers.
"""

import json
import logging
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..data.sample_counts import SampleCounts
from ..training.data_collator import chat_prompt

__all__ = [
    "BENCHMARKS",
    "BenchmarkItem",
    "MVBENCH_TASKS",
    "VIDEOMME_DURATIONS",
    "benchmark_prompt",
    "load_benchmark",
    "load_mvbench",
    "load_videomme",
]

logger = logging.getLogger(__name__)

# Each MVBench task's video folder, as lmms-eval maps the Hub repository's unzipped `video/` archives
# (https://github.com/EvolvingLMMs-Lab/lmms-eval, lmms_eval/tasks/mvbench/utils.py, DATA_LIST).
MVBENCH_TASKS = {
    "object_interaction": "star/Charades_segment",
    "action_sequence": "star/Charades_segment",
    "action_prediction": "star/Charades_segment",
    "action_localization": "sta/sta_video_segment",
    "moving_count": "clevrer/video_validation",
    "fine_grained_pose": "nturgbd_convert",
    "character_order": "perception/videos",
    "object_shuffle": "perception/videos",
    "egocentric_navigation": "vlnqa",
    "moving_direction": "clevrer/video_validation",
    "episodic_reasoning": "tvqa/video_fps3_hq_segment",
    "fine_grained_action": "Moments_in_Time_Raw/videos",
    "scene_transition": "scene_qa/video",
    "state_change": "perception/videos",
    "moving_attribute": "clevrer/video_validation",
    "action_antonym": "ssv2_video_mp4",
    "unexpected_action": "FunQA_test/test",
    "counterfactual_inference": "clevrer/video_validation",
    "object_existence": "clevrer/video_validation",
    "action_count": "perception/videos",
}
VIDEOMME_DURATIONS = ("short", "medium", "long")
VIDEOMME_PARQUET = Path("videomme") / "test-00000-of-00001.parquet"
VIDEOMME_SUFFIXES = (".mp4", ".MP4", ".mkv")  # lmms-eval's videomme_doc_to_visual tries these in turn

# MVBench's own evaluation (https://github.com/OpenGVLab/Ask-Anything, video_chat2/mvbench.ipynb): this system text,
# the question as "Question: ...\nOptions:\n(A) ...\n(B) ...", then "\nOnly give the best option.", and the
# assistant's turn opened with "Best option:(" so that the answer is the option's letter.
MVBENCH_SYSTEM = (
    "Carefully watch the video and pay attention to the cause and sequence of events, the detail and movement of "
    "objects, and the action and pose of persons. Based on your observations, select the best option that accurately "
    "addresses the question.\n"
)
MVBENCH_QUESTION_SUFFIX = "\nOnly give the best option."
MVBENCH_ANSWER_PREFIX = "Best option:("
# Video-MME's frames-only prompt, as lmms-eval quotes the benchmark (lmms_eval/tasks/videomme/utils.py, the comment
# "Frames / Frames + Audio" above videomme_doc_to_text_subtitle): instruction, question, options "A. ...", one a line,
# then "The best answer is:".
VIDEOMME_INSTRUCTION = (
    "Select the best answer to the following multiple-choice question based on the video. Respond with only the "
    "letter (A, B, C, or D) of the correct option."
)
VIDEOMME_ANSWER_CUE = "The best answer is:"
VIDEOMME_OPTION = re.compile(r"^\s*([A-Z])\.\s*(.*)$", re.DOTALL)  # "A. text"


class MalformedRow(ValueError):
    """A benchmark row that cannot be scored; the message says which field and why."""


@dataclass
class BenchmarkItem:
    """One multiple-choice question about one video.

    options: the answers' texts without their letters (option i is letter `string.ascii_uppercase[i]`).
    answer: the right option's letter. metadata: what results are grouped by (MVBench `task`; Video-MME
    `duration`, `task_type`, `domain`, `sub_category`) and the row's id.
    """

    benchmark: str
    video: str
    question: str
    options: list[str]
    answer: str
    metadata: dict = field(default_factory=dict)

    @property
    def letters(self) -> list[str]:
        return list(string.ascii_uppercase[: len(self.options)])


def _text(row: dict, name: str) -> str:
    value = row.get(name)
    if not isinstance(value, str) or not value.strip():
        raise MalformedRow(f"{name!r} is {value!r}; expected a non-empty string")
    return value


def _within(root: Path, relative: str, what: str) -> Path:
    """`root / relative`, refusing a path that leaves `root` (an absolute path or `..` in a row)."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise MalformedRow(f"{what} {relative!r} leaves the data directory")
    return path


def _mvbench_item(row, task: str, data_dir: Path) -> BenchmarkItem | None:
    """The item of one row of json/<task>.json, or None when its video is not on disk."""
    if not isinstance(row, dict):
        raise MalformedRow(f"a row is {type(row).__name__}; expected an object")
    candidates = row.get("candidates")
    if (
        not isinstance(candidates, list)
        or not 2 <= len(candidates) <= 26
        or not all(isinstance(c, str) for c in candidates)
    ):
        raise MalformedRow(f"'candidates' is {candidates!r}; expected a list of 2 to 26 strings")
    answer = _text(row, "answer")
    if answer not in candidates:
        raise MalformedRow(f"'answer' {answer!r} is none of the candidates {candidates!r}")
    video = _text(row, "video")
    folder = MVBENCH_TASKS[task]
    for root in (data_dir / "video" / folder, data_dir / folder):
        path = _within(data_dir, str(root.relative_to(data_dir) / video), "'video'")
        if path.is_file():
            return BenchmarkItem(
                "mvbench",
                str(path),
                _text(row, "question"),
                list(candidates),
                string.ascii_uppercase[candidates.index(answer)],
                {"task": task, "video": video},
            )
    return None


def load_mvbench(data_dir, subset=None, counts: SampleCounts | None = None) -> Iterator[BenchmarkItem]:
    """MVBench's items, task by task (`subset`: task names, default all 20 that have a json/<task>.json); a wrong
    directory or subset raises here, before any item is read."""
    data_dir, counts = Path(data_dir), counts if counts is not None else SampleCounts()
    unknown = sorted(set(subset or ()) - set(MVBENCH_TASKS))
    if unknown:
        raise ValueError(f"--subset {unknown}: not MVBench tasks; expected some of {sorted(MVBENCH_TASKS)}")
    present = [task for task in MVBENCH_TASKS if (data_dir / "json" / f"{task}.json").is_file()]
    tasks = list(subset) if subset else present
    if not tasks:
        raise FileNotFoundError(f"--data_dir {str(data_dir)!r} holds no json/<task>.json: not MVBench's layout")
    return _mvbench_items(data_dir, tasks, counts)


def _mvbench_items(data_dir: Path, tasks: list[str], counts: SampleCounts) -> Iterator[BenchmarkItem]:
    for task in tasks:
        path = data_dir / "json" / f"{task}.json"
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(rows, list):
                raise MalformedRow(f"holds a {type(rows).__name__}; expected a list of rows")
        except (OSError, ValueError) as error:  # missing, unreadable or not JSON: this task is skipped, not the run
            logger.warning("MVBench %s: skipped %s (%s)", task, path, error)
            counts.skipped["unreadable_annotations"] += 1
            continue
        yield from _rows(rows, counts, lambda row, task=task: _mvbench_item(row, task, data_dir), f"MVBench {task}")


def _videomme_item(row: dict, data_dir: Path) -> BenchmarkItem | None:
    """The item of one row of the Video-MME parquet, or None when its video is not on disk."""
    options = row.get("options")
    if not isinstance(options, list) or len(options) < 2:
        raise MalformedRow(f"'options' is {options!r}; expected a list of 'A. ...' strings")
    texts = []
    for index, option in enumerate(options):
        match = VIDEOMME_OPTION.match(option) if isinstance(option, str) else None
        if match is None or match.group(1) != string.ascii_uppercase[index]:
            raise MalformedRow(f"option {index} is {option!r}; expected '{string.ascii_uppercase[index]}. ...'")
        texts.append(match.group(2).strip())
    answer = _text(row, "answer").strip()
    if answer not in string.ascii_uppercase[: len(options)]:
        raise MalformedRow(f"'answer' is {answer!r}; expected one of the option letters")
    duration = _text(row, "duration")
    if duration not in VIDEOMME_DURATIONS:
        raise MalformedRow(f"'duration' is {duration!r}; expected one of {VIDEOMME_DURATIONS}")
    video_id = _text(row, "videoID")
    metadata = {"duration": duration, "task_type": _text(row, "task_type"), "videoID": video_id}
    metadata.update({name: str(row.get(name)) for name in ("question_id", "domain", "sub_category")})
    for suffix in VIDEOMME_SUFFIXES:
        path = _within(data_dir, f"data/{video_id}{suffix}", "'videoID'")
        if path.is_file():
            return BenchmarkItem("videomme", str(path), _text(row, "question"), texts, answer, metadata)
    return None


def load_videomme(data_dir, subset=None, counts: SampleCounts | None = None) -> Iterator[BenchmarkItem]:
    """Video-MME's items in the parquet's order, which keeps a video's questions together (`subset`: durations);
    a wrong directory, subset or parquet file raises here, before any item is read."""
    import pyarrow.parquet as pq

    data_dir, counts = Path(data_dir), counts if counts is not None else SampleCounts()
    unknown = sorted(set(subset or ()) - set(VIDEOMME_DURATIONS))
    if unknown:
        raise ValueError(f"--subset {unknown}: not Video-MME durations; expected some of {list(VIDEOMME_DURATIONS)}")
    path = data_dir / VIDEOMME_PARQUET
    if not path.is_file():
        raise FileNotFoundError(f"--data_dir {str(data_dir)!r} holds no {VIDEOMME_PARQUET}: not Video-MME's layout")
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as error:  # noqa: BLE001 - pyarrow raises its own classes for a damaged file
        raise ValueError(f"{str(path)!r} is not a readable parquet file: {error}") from error
    if subset:
        rows = [row for row in rows if isinstance(row, dict) and row.get("duration") in subset]
    return _rows(rows, counts, lambda row: _videomme_item(row, data_dir), "Video-MME")


def _rows(rows, counts: SampleCounts, make_item, source: str) -> Iterator[BenchmarkItem]:
    """Items of `rows`, counting each row that had no video on disk or could not be read."""
    for index, row in enumerate(rows):
        try:
            item = make_item(row)
        except MalformedRow as error:
            logger.debug("%s: skipped row %d: %s", source, index, error)
            counts.skipped["malformed_row"] += 1
            continue
        if item is None:
            counts.skipped["missing_video"] += 1
            continue
        yield item


BENCHMARKS = {"mvbench": load_mvbench, "videomme": load_videomme}


def load_benchmark(name: str, data_dir, subset=None, counts: SampleCounts | None = None) -> Iterator[BenchmarkItem]:
    """`load_mvbench` or `load_videomme` by name."""
    if name not in BENCHMARKS:
        raise ValueError(f"--benchmark {name!r}: expected one of {sorted(BENCHMARKS)}")
    if not Path(data_dir).is_dir():
        raise FileNotFoundError(f"--data_dir {str(data_dir)!r} is not a directory")
    return BENCHMARKS[name](data_dir, subset=subset, counts=counts)


def benchmark_prompt(processor, item: BenchmarkItem) -> str:
    """The chat-formatted prompt (with one `<video>`) after which the model answers with an option letter.

    The question comes before the video, unlike the benchmarks' own models: queries are planned from the text before
    each frame (`chat_prompt`), so only a question read first can steer where the model looks.
    """
    if item.benchmark == "mvbench":
        options = "\n".join(f"({letter}) {text}" for letter, text in zip(item.letters, item.options, strict=True))
        question = f"Question: {item.question}\nOptions:\n{options}{MVBENCH_QUESTION_SUFFIX}"
        messages = [
            {"role": "system", "content": MVBENCH_SYSTEM},
            {"role": "user", "content": [{"type": "text", "text": question}, {"type": "video"}]},
        ]
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + (
            MVBENCH_ANSWER_PREFIX
        )
    options = "\n".join(f"{letter}. {text}" for letter, text in zip(item.letters, item.options, strict=True))
    return chat_prompt(processor, f"{VIDEOMME_INSTRUCTION}\n{item.question}\n{options}\n{VIDEOMME_ANSWER_CUE}")
