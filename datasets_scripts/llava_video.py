"""Check LLaVA-Video-178K annotations and videos before training on them: decode the first samples, count the skips.

    python datasets_scripts/llava_video.py --check 0_30_s_academic_v0_1/cap.json --video_root 0_30_s_academic_v0_1
    python datasets_scripts/llava_video.py --check cap.json --shards videos_1.tar.gz videos_2.tar.gz --limit 4

Exit status 0 when at least one sample was read. The work is `foveated_vlm.data.llava_video.main`; this file only
runs it.
"""

import sys

from foveated_vlm.data.llava_video import main

if __name__ == "__main__":
    sys.exit(main())
