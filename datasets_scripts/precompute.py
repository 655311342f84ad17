"""Precompute reconstruction targets to disk once, for training runs to read (`--precomputed_targets DIR`).

    python datasets_scripts/precompute.py --dataset synthetic --out targets/ --target sd-vae --max_videos 10000
    python datasets_scripts/precompute.py --dataset llava_video --annotation_files a.json --shards s1.tar.gz ... \\
        --out targets/ --target sd-vae --num_frames 8 --frame_size 256

The work, the flags and the output layout are `foveated_vlm.data.precompute`'s; this file only runs it.
"""

from foveated_vlm.data.precompute import main

if __name__ == "__main__":
    main()
