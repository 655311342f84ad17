"""Check WebVid metadata before training on it: fetch and decode the first clips, count what is skipped by reason.

    python datasets_scripts/webvid.py --check webvid_train.csv [more.csv ...] [--limit 16] [--timeout 10]

Exit status 0 when at least one clip was read. The work is `foveated_vlm.data.webvid.main`; this file only runs it.
"""

import sys

from foveated_vlm.data.webvid import main

if __name__ == "__main__":
    sys.exit(main())
