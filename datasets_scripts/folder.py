"""Check a folder of videos before training on it: decode the clips its annotation file names, count the skips.

    python datasets_scripts/folder.py --check videos/annotations.csv [--video_root videos] [--limit 16]

Exit status 0 when at least one clip was read. The work is `foveated_vlm.data.folder.main`; this file only runs it.
"""

import sys

from foveated_vlm.data.folder import main

if __name__ == "__main__":
    sys.exit(main())
