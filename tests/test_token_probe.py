"""experiments/token_probe.py on a fresh model: the preset and train.py flags it is given shape the model it probes.
(Its probe, and a run on a checkpoint: tests/test_foveation_experiment.py.)"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments"))
import token_probe  # noqa: E402


def test_a_fresh_model_is_built_from_the_preset_and_the_train_flags():
    args = argparse.Namespace(model=None, preset="synthetic")
    model, processor = token_probe.load(args, ["--tokens_per_frame", "2", "--text_layers", "1", "--num_frames", "4"])
    assert model.config.tokens_per_frame == 2 and model.config.text_config.num_hidden_layers == 1
    assert processor.video_processor.num_frames == 4
    assert model.config.vision_config.num_hidden_layers == 4  # the preset's own size where no flag overrides it
