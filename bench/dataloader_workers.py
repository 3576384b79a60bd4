"""DataLoader worker processes on a decoding-heavy ImageFolder: one epoch with num_workers=0 against
num_workers=2 (and any others given), the same batches checked, wall time per epoch.

    PYTHONPATH=. .venv/bin/python bench/dataloader_workers.py                       # 2000 JPEGs of 256 px
    PYTHONPATH=. .venv/bin/python bench/dataloader_workers.py --images 64 --size 64 --epochs 1   # a smoke run

The images are random-noise JPEG/PNG files written by Pillow into a temporary folder (deleted at the
end); each sample is decoded, resized to --resize and center-cropped to --crop, so the per-sample
work is Pillow decoding, which the workers spread over processes. The first epoch of each setting
is a warm-up (page cache, worker start) unless --epochs is 1. Run by hand on a quiet machine.
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import vitc.data as vd  # noqa: E402


def write_folder(root, images, size, classes, seed):
    """``images`` files over ``classes`` sub-folders, alternately JPEG and PNG, smooth noise so the
    files are not trivially compressible."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for k in range(images):
        cls = os.path.join(root, f"class{k % classes}")
        os.makedirs(cls, exist_ok=True)
        small = rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
        noise = rng.integers(-20, 21, (size, size, 3))
        img = Image.fromarray(np.clip(np.asarray(img, np.int16) + noise, 0, 255).astype(np.uint8))
        if k % 2:
            img.save(os.path.join(cls, f"{k}.png"))
        else:
            img.save(os.path.join(cls, f"{k}.jpg"), quality=90)


def run(dataset, workers, batch_size, epochs, seed):
    loader = vd.DataLoader(dataset, batch_size=batch_size, shuffle=True, seed=seed, num_workers=workers,
                           persistent_workers=workers > 0, to_tensor=None)
    times, first = [], None
    for epoch in range(epochs):
        loader.set_epoch(0)  # every epoch the same batches, so settings can be compared batch for batch
        t0 = time.perf_counter()
        batches = [(x, y) for x, y in loader]
        times.append(time.perf_counter() - t0)
        if first is None:
            first = batches
    loader.close()
    return times, first


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", type=int, default=2000, help="files in the folder")
    p.add_argument("--size", type=int, default=256, help="side of each written image (px)")
    p.add_argument("--resize", type=int, default=72, help="Resize() target (shorter side)")
    p.add_argument("--crop", type=int, default=64, help="CenterCrop() size")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per setting (the first is a warm-up)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="num_workers settings to time")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vitc-bench-imagefolder-") as root:
        t0 = time.perf_counter()
        write_folder(root, args.images, args.size, args.classes, args.seed)
        write_time = time.perf_counter() - t0
        ds = vd.ImageFolder(root, transform=vd.Compose([vd.Resize(args.resize), vd.CenterCrop(args.crop),
                                                        vd.ToTensor()]))
        results, reference = {}, None
        for w in args.workers:
            times, batches = run(ds, w, args.batch_size, args.epochs, args.seed)
            if reference is None:
                reference = batches
            same = len(batches) == len(reference) and all(
                np.array_equal(a, c) and np.array_equal(b, d) for (a, b), (c, d) in zip(batches, reference))
            timed = times[1:] if len(times) > 1 else times
            results[w] = {"epoch_s": times, "median_s": float(np.median(timed)),
                          "images_per_s": args.images / float(np.median(timed)), "same_batches": same}
            print(f"num_workers={w}: {results[w]['median_s']:.3f} s/epoch "
                  f"({results[w]['images_per_s']:.0f} images/s), same batches as num_workers={args.workers[0]}: "
                  f"{same}", flush=True)
    base = results[args.workers[0]]["median_s"]
    print(json.dumps({"args": vars(args), "cpu": platform.processor() or platform.machine(),
                      "cpus": os.cpu_count(), "write_s": write_time, "results": results,
                      "speedup": {w: base / r["median_s"] for w, r in results.items()}}))
    return 0 if all(r["same_batches"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
