import os
import sys

import pytest
import torch

# Nothing may come from the Hub in tests: an accidental download fails loudly.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
sys.path.insert(0, os.path.dirname(__file__))  # for tests/tiny.py
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))  # for train.py


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
