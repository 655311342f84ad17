"""A local `evaluate` metric for captions: corpus BLEU-4 (sacrebleu) and ROUGE-L F1 (rouge-score), one reference each.

`evaluate.load("bleu")` and `evaluate.load("rouge")` fetch their scripts from the Hub, which offline runs cannot
reach; this module loads from disk with `evaluate.load(path_to_this_file)` (see `evaluation.metrics`) and calls
the reference libraries themselves, so the numbers are the published tools' numbers, not a re-implementation's:

- BLEU: `sacrebleu.corpus_bleu` with its defaults, signature `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp`
  (mixed case, the 13a tokenizer of WMT's mteval, exponential-decay smoothing of zero n-gram counts), divided by
  100 so it is a fraction in [0, 1] like the other scores.
- ROUGE-L: `rouge_score`'s `rougeL` F-measure (longest common subsequence per caption, no summary-level split),
  **without stemming**, averaged over captions: captioning benchmarks (COCO, MSR-VTT, VATEX, through coco-caption)
  report ROUGE-L on unstemmed lower-cased words. rouge-score lower-cases and keeps only [a-z0-9] words; coco-caption
  weighs recall by beta = 1.2 where this is F1 (beta = 1), so its scores sit slightly closer to recall.
"""

import datasets
import evaluate
import sacrebleu
from rouge_score import rouge_scorer


def bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU-4 of the captions against one reference each, sacrebleu's defaults, in [0, 1]."""
    return sacrebleu.corpus_bleu(predictions, [references]).score / 100


def rouge_l(predictions: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 over the captions (rouge-score, no stemming); 0.0 for no captions."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    scores = [
        scorer.score(reference, prediction)["rougeL"].fmeasure
        for prediction, reference in zip(predictions, references, strict=True)
    ]
    return sum(scores) / len(scores) if scores else 0.0


class CaptionScores(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="Papineni et al. 2002 (BLEU); Post 2018 (sacrebleu); Lin 2004 (ROUGE-L)",
            inputs_description="predictions: list of str; references: list of str (one per prediction)",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        return {"bleu": bleu(predictions, references), "rouge_l": rouge_l(predictions, references)}
