"""Precompute reconstruction targets to disk, once, instead of running the target encoder in every training step.

    python -m foveated_vlm.data.precompute --dataset synthetic --out targets/ --target sd-vae --max_videos 10000
    python -m foveated_vlm.data.precompute --dataset llava_video --annotation_files a.json --shards s1.tar.gz ... \\
        --out targets/ --target sd-vae --vae stabilityai/sd-vae-ft-mse --num_frames 8 --frame_size 256

Targets are computed from exactly the frames training sees: each sample's frames go through the same
`FoveatedVideoProcessor` settings (sampling, crop, resize) with `return_target_frames=True`, as
`foveated_vlm.VideoTextCollator` does, so precomputed and on-the-fly targets agree (exactly in float32 storage;
bfloat16 storage rounds each value to 8 significant bits, relative error <= 2**-8). The settings are recorded, and
`PrecomputedTargets.check` compares them with the training run's video processor.

Layout of the output directory:

    index.json                   settings, and per completed shard its file and video ids; written last, atomically
    shard-00000.safetensors      {video_id: latents [T, C, h, w]} in the storage dtype, shard_size videos per file
    .precompute-files            the names of every file precompute created here, each listed before it is made
    .precompute.lock             the lock of the run writing the folder (an empty file, left in place)

Resumable and idempotent: a shard becomes visible only by an atomic rename once fully written and synced, and counts
as done only once `index.json` (also replaced atomically) lists it. A run that crashes loses at most the shard it was
filling; the next run removes its leftovers, skips every video already listed, and appends new shards. A source that
ran out marks the index complete, after which a re-run touches nothing.

The folder may hold other files: precompute only ever removes files listed in `.precompute-files`, so an unrelated
`notes.tmp` or `README.md` is left as it is. A file it did not write but could overwrite or mistake for its own (an
unlisted `shard-00007.safetensors`, say, copied from elsewhere or left by a version without the list) makes it refuse
to start, naming the file, and so does an `index.json` of another format. One writer per folder: a run takes the lock
without waiting, so a second run on the same folder stops at once with a message naming the folder and the lock.

Size: an 8-frame video of 4x32x32 SD-VAE latents is 8 * 4 * 32 * 32 * 2 bytes = 64 KiB in bfloat16, plus its entry
in the shard header (measured: about 65,700 bytes a video, the header holding its id), so 10k videos take about 627 MiB;
each run reports `bytes_per_video`.
"""

import argparse
import functools
import json
import logging
import os
import re
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes

from ..video_processing_foveated import FoveatedVideoProcessor
from .faults import SampleFailures
from .pipeline import build_dataset
from .targets import PixelTargetEncoder, SDVAETargetEncoder, build_target_encoder

__all__ = [
    "INDEX",
    "LOCK",
    "MANIFEST",
    "OutputFolderError",
    "PrecomputedTargets",
    "PrecomputedTargetsCollator",
    "main",
    "precompute_targets",
    "target_settings",
    "video_id_of",
]

logger = logging.getLogger(__name__)

INDEX = "index.json"
LOCK = ".precompute.lock"  # held by the run writing the folder (`filelock`); the empty file stays
MANIFEST = ".precompute-files"  # the names of the files precompute created in the folder, one a line
# Names precompute writes and may remove again: shards, and the temporary files of shards and of the index.
_OWN_NAME = re.compile(r"shard-\d{5,}\.safetensors|\.shard-\d{5,}\.safetensors\.tmp|\.index\.json\.tmp")
FORMAT = "foveated-vlm-targets/1"
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
# The video processor settings that decide which pixels a target is computed from.
FRAME_SETTINGS = ("size", "num_frames", "fps", "max_frames", "resize_mode")


def video_id_of(sample: dict) -> str:
    """The name targets are stored under: the sample's `video_id` (every source sets one)."""
    if "video_id" in sample:
        return str(sample["video_id"])
    raise KeyError(f"a sample needs a video_id to store or look up its targets; it has {sorted(sample)}")


def target_settings(target_encoder, video_processor, dtype: torch.dtype) -> dict:
    """Everything the stored targets depend on: a directory only ever holds targets made with one set of these."""
    if isinstance(target_encoder, PixelTargetEncoder):
        encoder = {"target": "pixels", "target_size": target_encoder.target_size}
    elif isinstance(target_encoder, SDVAETargetEncoder):
        config = target_encoder.vae.config
        encoder = {"target": "sd-vae", "vae": config._name_or_path, "scaling_factor": config.scaling_factor}
    else:
        raise TypeError(f"unknown target encoder {type(target_encoder).__name__}")
    frames = {name: getattr(video_processor, name) for name in FRAME_SETTINGS}
    return encoder | frames | {"dtype": str(dtype).removeprefix("torch.")}


class OutputFolderError(RuntimeError):
    """The output directory cannot be written: another run holds it, or it holds files precompute did not write."""


class _OutputFolder:
    """The output directory, held by one run at a time, in which precompute only ever removes what it wrote itself.

    On entry it takes `LOCK` (`filelock`, without waiting), so a second run on the folder fails at once; the kernel
    drops the lock when the process ends, however it ends. `MANIFEST` lists every name precompute has created here,
    each appended and synced before its file is made, so anything a crash leaves behind is listed: `clean` removes
    the listed files the index does not hold, and refuses to start if a file precompute could write is there but
    unlisted (it would be overwritten or mistaken for a shard). Files of other names are never touched.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self._lock = FileLock(directory / LOCK, timeout=0)
        self._recorded: set[str] = set()
        self._manifest_ends_a_line = True

    def __enter__(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout as error:
            raise OutputFolderError(
                f"{self.directory} is in use by another precompute run, which holds the lock {self.directory / LOCK};"
                " wait for it to finish, or choose another --out"
            ) from error
        manifest = self.directory / MANIFEST
        text = manifest.read_bytes().decode(errors="replace") if manifest.exists() else ""
        # The last piece is "" or a line a crash cut off, whose file was never made. Only precompute's own names
        # count, so a stray entry ("../x", "notes.txt") can never point the cleaning elsewhere.
        self._recorded = {line for line in text.split("\n")[:-1] if _OWN_NAME.fullmatch(line)}
        self._manifest_ends_a_line = text.endswith("\n") or not text
        return self

    def __exit__(self, *exc_info):
        self._lock.release()

    def read_index(self) -> dict | None:
        path = self.directory / INDEX
        if not path.exists():
            return None
        try:
            index = json.loads(path.read_bytes())
        except ValueError as error:  # not JSON, or not UTF-8
            problem = str(error)
        else:
            if isinstance(index, dict) and index.get("format") == FORMAT:
                return index
            problem = f"no format {FORMAT!r}"
        raise OutputFolderError(f"{path} is not an index precompute wrote ({problem}); choose another --out")

    def clean(self, index: dict) -> None:
        """Refuse foreign files that precompute could overwrite; remove what a crashed run of precompute left."""
        listed = {shard["file"] for shard in index["shards"]}
        present = {path.name for path in self.directory.iterdir()}
        foreign = sorted(name for name in present if _OWN_NAME.fullmatch(name) and name not in listed | self._recorded)
        if foreign:
            raise OutputFolderError(
                f"{self.directory} holds files that precompute did not write but could overwrite: {foreign};"
                " move them elsewhere, or choose another --out"
            )
        for name in sorted(self._recorded & present - listed):
            (self.directory / name).unlink()

    def write(self, name: str, data: bytes) -> None:
        """Write a hidden temporary file, sync, rename it over `name`: readers see the old file or the whole new one."""
        path, temporary = self.directory / name, self.directory / f".{name}.tmp"
        self._record(*(own for own in (name, temporary.name) if _OWN_NAME.fullmatch(own)))
        handle = open(temporary, "xb")  # exclusive: a file that precompute did not make is never truncated
        try:
            with handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)

    def _record(self, *names: str) -> None:
        new = [name for name in names if name not in self._recorded]
        if not new:
            return
        with open(self.directory / MANIFEST, "ab") as handle:
            lines = "".join(f"{name}\n" for name in new)
            handle.write(("" if self._manifest_ends_a_line else "\n").encode() + lines.encode())
            handle.flush()
            os.fsync(handle.fileno())  # listed on disk before the file exists
        self._recorded.update(new)
        self._manifest_ends_a_line = True


def _load_index(directory: Path) -> dict | None:
    path = directory / INDEX
    return json.loads(path.read_text()) if path.exists() else None


def precompute_targets(
    samples,
    out_dir,
    target_encoder,
    video_processor,
    *,
    shard_size: int = 256,
    batch_size: int = 8,
    max_videos: int | None = None,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device | None = None,
) -> dict:
    """Encode the targets of `samples` (an iterable of sample dicts) into `out_dir`, resuming what is there.

    Args:
        samples: samples with `frames` (anything the video processor reads) and a `video_id` (see `video_id_of`);
            a video seen again (one per question, in LLaVA-Video) is encoded once.
        target_encoder: a `PixelTargetEncoder` or `SDVAETargetEncoder` (`foveated_vlm.build_target_encoder`).
        video_processor: the training run's `FoveatedVideoProcessor` (or a `FoveatedVLMProcessor` holding it).
        shard_size: videos per shard file; batch_size: videos per encoder call.
        max_videos: stop once the directory holds this many videos (required for unbounded sources).
        dtype: storage dtype; device: where the encoder runs (its parameters are moved there).
    Returns a report: videos written now and in all, shards, bytes per video, skips by reason.
    Raises `OutputFolderError` if another run holds `out_dir`, or it holds files precompute could overwrite but did
    not write; `ValueError` if it holds targets made with other settings.
    """
    video_processor = getattr(video_processor, "video_processor", video_processor)
    settings = target_settings(target_encoder, video_processor, dtype)
    with _OutputFolder(Path(out_dir)) as folder:
        index = folder.read_index() or {"format": FORMAT, "settings": settings, "shards": [], "complete": False}
        if index["settings"] != settings:
            changed = {k: (index["settings"].get(k), v) for k, v in settings.items() if index["settings"].get(k) != v}
            raise ValueError(f"{out_dir} holds targets made with other settings (stored, requested): {changed}")
        folder.clean(index)
        done = {video_id for shard in index["shards"] for video_id in shard["video_ids"]}
        failures = SampleFailures("precompute")
        written = 0
        pending: dict[str, torch.Tensor] = {}  # the shard being filled: video_id -> latents [T, C, h, w]
        batch: dict[str, torch.Tensor] = {}  # video_id -> target frames [T, 3, S, S] in [-1, 1], not yet encoded

        def report():
            total_bytes = sum(shard["bytes"] for shard in index["shards"])
            return {"written": written, "videos": len(done), "shards": len(index["shards"]),
                    "bytes_per_video": total_bytes / max(len(done), 1), "skipped": dict(failures.failed)}  # fmt: skip

        def reached_max():
            return max_videos is not None and len(done) + len(pending) + len(batch) >= max_videos

        def target_frames(sample):  # what the collator's processor call gives the target encoder for this sample
            return video_processor(sample["frames"], return_target_frames=True)["target_frames"][0]  # [T, 3, S, S]

        def encode_batch():
            frames = torch.stack(list(batch.values()))  # [B, T, 3, S, S]
            latents = target_encoder.encode(frames if device is None else frames.to(device))  # [B, T, C, h, w]
            pending.update(zip(batch, latents.to("cpu", dtype).contiguous(), strict=True))
            batch.clear()

        def write_shard():
            nonlocal written
            name = f"shard-{len(index['shards']):05d}.safetensors"
            data = safetensors_bytes(pending, metadata={"format": "pt", "settings": json.dumps(settings)})
            folder.write(name, data)
            index["shards"].append({"file": name, "video_ids": list(pending), "bytes": len(data)})
            index["target_shape"] = list(next(iter(pending.values())).shape)  # [T, C, h, w]
            folder.write(INDEX, json.dumps(index, indent=1).encode())  # the shard counts as done from here
            done.update(pending)
            written += len(pending)
            pending.clear()

        if index["complete"] or reached_max():
            return report()  # nothing to add: the run is a no-op
        if device is not None:
            target_encoder.to(device)
        exhausted = True
        for sample in samples:
            video_id = video_id_of(sample)
            if video_id in done or video_id in pending or video_id in batch:
                continue
            frames = failures.attempt(video_id, functools.partial(target_frames, sample), lambda error: "decode")
            if frames is not None:
                batch[video_id] = frames
            if len(batch) == batch_size or len(pending) + len(batch) == shard_size or reached_max():
                encode_batch()
            if len(pending) == shard_size:
                write_shard()
            if reached_max():
                exhausted = False
                break
        if batch:
            encode_batch()
        if pending:
            write_shard()
        if exhausted:  # the source ran out: later runs have nothing to add
            index["complete"] = True
            folder.write(INDEX, json.dumps(index, indent=1).encode())
        logger.info("precompute: %s", failures.summary())
        return report()


class PrecomputedTargets:
    """Read targets written by `precompute_targets`: `get(video_id)` -> float32 `[T, C, h, w]`.

    Only shards listed in the index are read, so a directory that a crashed run left behind reads consistently.
    Shard files are opened lazily (memory-mapped) and reopened after pickling, e.g. in DataLoader workers.
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        index = _load_index(self.directory)
        if index is None or index.get("format") != FORMAT:
            raise ValueError(f"{self.directory} holds no precomputed targets ({INDEX} missing or of another format)")
        self.settings = index["settings"]
        self.complete = index["complete"]
        self._files = {video_id: shard["file"] for shard in index["shards"] for video_id in shard["video_ids"]}
        self._open = {}

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, video_id) -> bool:
        return video_id in self._files

    def __getstate__(self):
        return self.__dict__ | {"_open": {}}  # file handles stay in the process that opened them

    def get(self, video_id: str) -> torch.Tensor:
        if video_id not in self._files:
            raise KeyError(f"no precomputed targets for video {video_id!r} in {self.directory}")
        file = self._files[video_id]
        if file not in self._open:
            self._open[file] = safe_open(self.directory / file, framework="pt")
        return self._open[file].get_tensor(video_id).float()  # [T, C, h, w]

    def attach(self, sample: dict) -> dict:
        """The sample with its `target_latents` `[T, C, h, w]` added, looked up by `video_id_of(sample)`."""
        return sample | {"target_latents": self.get(video_id_of(sample))}

    def check(self, video_processor) -> None:
        """Raise `ValueError` if the training run's video processor would show the model other frames than the
        ones these targets were computed from."""
        video_processor = getattr(video_processor, "video_processor", video_processor)
        stored = {name: self.settings[name] for name in FRAME_SETTINGS}
        current = {name: getattr(video_processor, name) for name in FRAME_SETTINGS}
        if stored != current:
            raise ValueError(f"targets in {self.directory} were computed with {stored}, the processor uses {current}")


class PrecomputedTargetsCollator:
    """A `VideoTextCollator` (built with `target_encoder=None`) whose batches take `target_latents` `[B, T, C, h, w]`
    from disk instead of from an encoder: the same values an on-the-fly encoder gives, within the storage dtype."""

    def __init__(self, collator, targets: PrecomputedTargets):
        if getattr(collator, "target_encoder", None) is not None:
            raise ValueError("the collator already computes targets; build it with target_encoder=None")
        targets.check(collator.processor)
        self.collator, self.targets = collator, targets

    def __call__(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        samples = [self.targets.attach(sample) for sample in samples]
        batch = self.collator(samples)
        batch["target_latents"] = torch.stack([sample["target_latents"] for sample in samples])  # [B, T, C, h, w]
        return batch


def _source(args):
    return build_dataset(
        args.dataset,
        seed=args.seed,
        frame_size=args.frame_size,
        num_frames=args.num_frames,
        task=args.task,
        data_files=args.annotation_files,
        video_root=args.video_root,
        shards=args.shards,
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m foveated_vlm.data.precompute", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help="synthetic, llava_video, or any name build_dataset knows")
    parser.add_argument("--out", required=True, help="output directory (resumed if it exists)")
    parser.add_argument("--target", required=True, choices=("sd-vae", "pixels"))
    parser.add_argument("--vae", default="stabilityai/sd-vae-ft-mse", help="sd-vae: Hub name or local directory")
    parser.add_argument("--target_size", type=int, help="pixels: side of the targets (default frame_size / 8)")
    parser.add_argument("--num_frames", type=int, default=8)
    parser.add_argument("--frame_size", type=int, default=256)
    parser.add_argument("--resize_mode", default="crop", choices=("crop", "squash"))
    parser.add_argument("--shard_size", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=8, help="videos per encoder call")
    parser.add_argument("--max_videos", type=int, help="stop at this many videos (needed for unbounded sources)")
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES), help="storage dtype")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0, help="stream seed of synthetic (the training run's seed)")
    parser.add_argument("--task", default="caption", help="synthetic task (clips differ by task: match training)")
    parser.add_argument("--annotation_files", nargs="*", help="llava_video: annotation JSON files or URLs")
    parser.add_argument("--video_root", help="llava_video: folder the video shards were extracted into")
    parser.add_argument("--shards", nargs="*", help="llava_video: .tar.gz video shards, streamed")
    args = parser.parse_args(argv)
    if args.max_videos is None and args.dataset != "llava_video":
        parser.error(f"--dataset {args.dataset} is unbounded; pass --max_videos")
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.target == "pixels":
        encoder = build_target_encoder("pixels", target_size=args.target_size or args.frame_size // 8)
    else:
        encoder = build_target_encoder("sd-vae", vae_name_or_path=args.vae)
    video_processor = FoveatedVideoProcessor(
        size=args.frame_size, num_frames=args.num_frames, resize_mode=args.resize_mode
    )
    try:
        report = precompute_targets(
            _source(args), args.out, encoder, video_processor, shard_size=args.shard_size,
            batch_size=args.batch_size, max_videos=args.max_videos, dtype=DTYPES[args.dtype], device=args.device,
        )  # fmt: skip
    except OutputFolderError as error:  # the user's folder, not a bug: the message says what to do
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
