"""Video sources for training and evaluation: streaming WebVid-10M and LLaVA-Video-178K, local folders, and the
procedural synthetic video that is the project's embedded, offline default (`datasets_scripts.synthetic`)."""
