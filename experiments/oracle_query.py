"""A diagnostic, not a method: `train.py` with the fine pass read by an oracle query — a learned embedding of the
colour the prompt names, with no language model in its path — and everything else as the flags say.

If even this query does not learn to single out the named object from the answers alone, the language model's
planning is not what stops the label-free runs (docs/foveation_experiment.md, "Without labels"). The colour is the
prompt's own word (read here from the clip's ground truth, which names the same colour); nothing says where the
object is. The run's own held-out evaluation would need the oracle too, so pass `--eval_videos 0` and read the
training logs.

    python experiments/oracle_query.py --preset clutter-emergent --glimpse_samples 0 --glimpse_location False \\
        --vision_position_init_std 3.0 --static_query_base True --eval_videos 0 --output_dir outputs/oracle-query
"""

import json
import os
import sys

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import train  # noqa: E402
from foveated_vlm.data.synthetic import PALETTE  # noqa: E402
from foveated_vlm.training import data_collator, trainer  # noqa: E402

COLOURS = {name: index for index, name in enumerate(PALETTE)}
_collate, _compute_loss, _build = (
    data_collator.VideoTextCollator.__call__,
    trainer.FoveatedTrainer.compute_loss,
    train.build_model_and_processor,
)


def collate(self, samples):
    """The batch, plus each clip's named colour as an id."""
    batch = _collate(self, samples)
    truths = [
        json.loads(s["ground_truth"]) if isinstance(s["ground_truth"], str) else s["ground_truth"] for s in samples
    ]
    batch["named_colour"] = torch.tensor([COLOURS[t["objects"][t["target"]]["colour"]] for t in truths])
    return batch


def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
    """Every frame's fine queries are the embedding of the named colour: `[B, T, K, qd]`."""
    inputs = dict(inputs)
    colour = inputs.pop("named_colour")
    frames, k = inputs["pixel_values_videos"].shape[1], model.config.tokens_per_frame
    inputs["fine_queries"] = model.oracle_queries(colour)[:, None, None, :].expand(-1, frames, k, -1)
    return _compute_loss(self, model, inputs, return_outputs, num_items_in_batch)


def build(model_args, data_args):
    """The model the flags describe, with the oracle's embedding (std 1, like the static queries) attached, so the
    optimizer trains it."""
    model, processor = _build(model_args, data_args)
    model.oracle_queries = nn.Embedding(len(COLOURS), model.config.query_dim)
    nn.init.normal_(model.oracle_queries.weight, std=1.0)
    return model, processor


if __name__ == "__main__":
    data_collator.VideoTextCollator.__call__ = collate
    trainer.FoveatedTrainer.compute_loss = compute_loss
    train.build_model_and_processor = build
    train.main(sys.argv[1:])
