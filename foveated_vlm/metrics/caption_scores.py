"""A local `evaluate` metric for captions: corpus BLEU-4 and ROUGE-L F1 against one reference per caption.

`evaluate.load("bleu")` and `evaluate.load("rouge")` fetch their scripts from the Hub, which offline runs cannot
reach; this module loads from disk with `evaluate.load(path_to_this_file)` (see `foveated_vlm.evaluation`).
BLEU follows Papineni et al. (2002): clipped n-gram precisions for n = 1..4, geometric mean, brevity penalty,
with +1 smoothing of the n > 1 precisions (Lin & Och, 2004) so short captions do not score 0. ROUGE-L follows
Lin (2004): the longest common subsequence of the tokens, F1 of its precision and recall. Tokens are lower-cased
words and punctuation.
"""

import math
import re
from collections import Counter

import datasets
import evaluate

_TOKEN = re.compile(r"\w+|[^\w\s]")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _lcs(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def bleu(predictions: list[list[str]], references: list[list[str]], max_order: int = 4) -> float:
    matches, totals = [0] * max_order, [0] * max_order
    for prediction, reference in zip(predictions, references, strict=True):
        for n in range(1, max_order + 1):
            predicted = Counter(tuple(prediction[i : i + n]) for i in range(len(prediction) - n + 1))
            referenced = Counter(tuple(reference[i : i + n]) for i in range(len(reference) - n + 1))
            matches[n - 1] += sum((predicted & referenced).values())
            totals[n - 1] += max(len(prediction) - n + 1, 0)
    if not totals[0] or not matches[0]:
        return 0.0
    smoothed = [matches[0] / totals[0]] + [(m + 1) / (t + 1) for m, t in zip(matches[1:], totals[1:], strict=True)]
    length = sum(map(len, predictions))
    reference_length = sum(map(len, references))
    brevity = 1.0 if length > reference_length else math.exp(1 - reference_length / max(length, 1))
    return brevity * math.exp(sum(math.log(p) for p in smoothed) / max_order)


def rouge_l(predictions: list[list[str]], references: list[list[str]]) -> float:
    scores = []
    for prediction, reference in zip(predictions, references, strict=True):
        common = _lcs(prediction, reference)
        if not common:
            scores.append(0.0)
            continue
        precision, recall = common / len(prediction), common / len(reference)
        scores.append(2 * precision * recall / (precision + recall))
    return sum(scores) / len(scores) if scores else 0.0


class CaptionScores(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="Papineni et al. 2002 (BLEU); Lin 2004 (ROUGE-L)",
            inputs_description="predictions: list of str; references: list of str (one per prediction)",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        predicted = [_tokens(text) for text in predictions]
        referenced = [_tokens(text) for text in references]
        return {"bleu": bleu(predicted, referenced), "rouge_l": rouge_l(predicted, referenced)}
