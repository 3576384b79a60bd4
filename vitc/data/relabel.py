"""Dense labels for token labeling (Jiang et al., arXiv 2104.10858 §3.1; ReLabel, Yun et al.,
arXiv 2101.05022 Alg. 1; zihangJiang/TokenLabeling generate_label.py, tlt/data/mixup.py,
tlt/data/label_transforms_factory.py).

1. generate_label_map: run a teacher over the whole data set, take its pre-pool feature map, apply its
   classifier to every cell (a 1×1 conv with the head's weights) and keep the top-k (score, class) per
   cell; one safetensors file per data set, carrying the data set's checksum.
2. Per batch (TokenLabelBatches): flip images and maps together, optionally RandAugment (its geometric
   ops warp the map too, vitc.data.relabel_augment), draw a RandomResizedCrop box per image,
   crop-resize the images and pool the dense map inside the same box with RoIAlign to 1×1 (the class
   label) and to the token grid (the token labels), softmax over classes, smooth. The map itself is
   never cropped: the box travels with the sample.

Box order: the reference hands (top, left, bottom, right) to RoIAlign's (x1, y1, x2, y2), which swaps
the axes of non-square crops; vitc passes (left, top, right, bottom) unless legacy_box_order=True.
"""
import hashlib

import numpy as np
from safetensors.numpy import load_file, save_file

import vitc as _v

from ..io import atomic_write
from .relabel_augment import warp_dense_maps

__all__ = ["dataset_checksum", "dense_logits", "generate_label_map", "load_label_map", "dense_from_topk",
           "relabel_pool", "random_resized_crop_boxes", "crop_resize", "TokenLabelBatches"]


def dataset_checksum(images, labels=None):
    """sha256 over the images' (and labels') bytes, shape and dtype: what a label map was made for."""
    h = hashlib.sha256()
    for a in (images,) if labels is None else (images, labels):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def dense_logits(teacher, x):
    """Per-cell class logits (B, K, Hl, Wl) of a vitc teacher: a ResNet (the feature map before its
    average pool, classified cell by cell by fc) or a ViT (its patch tokens after the final norm, classified
    by the aux head when it has one, else by mlp_head, reshaped to the token grid)."""
    from ..models import ResNet, ViT
    from ..nn import Identity
    if isinstance(teacher, ResNet):
        f = teacher.relu(teacher.bn1(teacher.conv1(x)))
        for stage in teacher.layers:
            f = stage(f)
        b, c, h, w = f.shape
        cells = f.reshape(b, c, h * w).transpose(1, 2)  # (B, Hl·Wl, C')
        z = teacher.fc(cells)
    elif isinstance(teacher, ViT):
        tok = teacher.forward_features(x)
        tok = tok[:, teacher.num_prefix_tokens:] if teacher.num_prefix_tokens else tok
        head = teacher.aux_head if teacher.aux_head is not None else teacher.mlp_head
        if teacher.aux_head is None and not isinstance(teacher.to_latent, Identity):
            raise ValueError("dense_logits: a ViT teacher with a pre-logits layer has no per-token classifier")
        z = head(tok)
        h, w = teacher.grid_size
    else:
        raise TypeError(f"dense_logits: teacher must be a vitc ResNet or ViT, got {type(teacher).__name__}")
    b, n, k = z.shape
    return z.transpose(1, 2).reshape(b, k, h, w)


def generate_label_map(teacher, images, path, *, checksum, topk=5, batch_size=256):
    """Write the top-k (scores float32, indices int16) of the teacher's dense logits for every image
    (N, C, H, W float32, already normalised as the teacher expects) to ``path`` (safetensors).
    Returns the map's (Hl, Wl)."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"generate_label_map: images must be (N, C, H, W), got {images.shape}")
    was = teacher.training
    teacher.eval()
    scores, indices = [], []
    with _v.no_grad():
        for s in range(0, len(images), batch_size):
            z = dense_logits(teacher, _v.from_numpy(np.ascontiguousarray(images[s:s + batch_size]))).numpy()
            k = z.shape[1]
            if not 1 <= topk <= k:
                raise ValueError(f"generate_label_map: topk must be in [1, {k}], got {topk}")
            idx = np.argsort(-z, axis=1, kind="stable")[:, :topk]
            scores.append(np.take_along_axis(z, idx, 1))
            indices.append(idx.astype(np.int16))
    teacher.train(was)
    arrays = {"scores": np.concatenate(scores), "indices": np.concatenate(indices)}
    meta = {"checksum": str(checksum), "num_classes": str(k), "topk": str(topk)}
    atomic_write(path, lambda tmp: save_file(arrays, tmp, metadata=meta))
    return arrays["scores"].shape[2:]


class LabelMap:
    """A loaded label map: scores (N, k, Hl, Wl), indices (N, k, Hl, Wl), num_classes."""

    def __init__(self, scores, indices, num_classes):
        self.scores, self.indices, self.num_classes = scores, indices, num_classes

    def __len__(self):
        return len(self.scores)

    def dense(self, rows):
        return dense_from_topk(self.scores[rows], self.indices[rows], self.num_classes)


def load_label_map(path, *, checksum, num_images=None):
    """Read a label map and refuse one made for another data set (checksum) or of the wrong shape."""
    try:
        arrays = load_file(path)
        from safetensors import safe_open
        with safe_open(path, "numpy") as f:
            meta = f.metadata() or {}
    except (OSError, ValueError) as e:
        raise ValueError(f"load_label_map: cannot read label map {path!r}: {e}") from e
    if meta.get("checksum") != str(checksum):
        raise ValueError(f"load_label_map: {path!r} was made for another data set (checksum "
                         f"{meta.get('checksum', 'missing')[:12]}…, this data set {str(checksum)[:12]}…); "
                         "regenerate it with generate_label_map")
    s, i = arrays.get("scores"), arrays.get("indices")
    if s is None or i is None or s.ndim != 4 or s.shape != i.shape:
        raise ValueError(f"load_label_map: {path!r} must hold scores and indices of one shape (N, k, Hl, Wl)")
    if num_images is not None and len(s) != num_images:
        raise ValueError(f"load_label_map: {path!r} has {len(s)} maps, the data set {num_images} images")
    k = int(meta.get("num_classes", 0))
    if k < 1 or i.min() < 0 or i.max() >= k:
        raise ValueError(f"load_label_map: {path!r} has class indices outside [0, {k})")
    return LabelMap(s.astype(np.float32), i.astype(np.int64), k)


def dense_from_topk(scores, indices, num_classes):
    """(B, k, Hl, Wl) top-k -> dense (B, K, Hl, Wl): zeros except the kept scores (as the reference,
    so a class outside the top-k still gets e⁰ in the softmax)."""
    b, _, h, w = scores.shape
    dense = np.zeros((b, num_classes, h, w), np.float32)
    np.put_along_axis(dense, indices, scores.astype(np.float32), axis=1)
    return dense


def relabel_pool(dense, boxes, grid=None, smoothing=0.0, legacy_box_order=False):
    """Pool dense maps (B, K, Hl, Wl) inside normalised crop boxes (B, 4) = (y0, x0, y1, x1) in [0, 1]:
    -> class labels (B, K) [, token labels (B, gh·gw, K) when grid=(gh, gw)], softmax over K then
    y·(1 − ε + ε/K) + ε/K (the reference's smoothing, sums to 1 + ε/K)."""
    dense = np.ascontiguousarray(dense, np.float32)
    boxes = np.asarray(boxes, np.float64)
    if dense.ndim != 4:
        raise ValueError(f"relabel_pool: dense maps must be (B, K, Hl, Wl), got {dense.shape}")
    b, k, hl, wl = dense.shape
    if boxes.shape != (b, 4):
        raise ValueError(f"relabel_pool: boxes must be ({b}, 4) rows (y0, x0, y1, x1), got {boxes.shape}")
    if not (np.all(boxes >= 0) and np.all(boxes <= 1) and np.all(boxes[:, 2] > boxes[:, 0])
            and np.all(boxes[:, 3] > boxes[:, 1])):
        raise ValueError("relabel_pool: crop boxes must lie inside the image, 0 <= y0 < y1 <= 1 and 0 <= x0 < x1 <= 1")
    y0, x0, y1, x1 = (boxes[:, j] for j in range(4))
    corners = (x0 * wl - 0.5, y0 * hl - 0.5, x1 * wl - 0.5, y1 * hl - 0.5)
    if legacy_box_order:  # reference: (top, left, bottom, right) read as (x1, y1, x2, y2)
        corners = (y0 * hl - 0.5, x0 * wl - 0.5, y1 * hl - 0.5, x1 * wl - 0.5)
    rois = np.stack((np.arange(b, dtype=np.float64),) + corners, 1).astype(np.float32)
    dt, rt = _v.from_numpy(dense), _v.from_numpy(np.ascontiguousarray(rois))
    out = [_soft(_v.roi_align(dt, rt, 1).numpy().reshape(b, k), smoothing)]
    if grid is not None:
        gh, gw = grid
        tok = _v.roi_align(dt, rt, (gh, gw)).numpy().reshape(b, k, gh * gw).transpose(0, 2, 1)
        out.append(_soft(tok, smoothing))
    return out[0] if grid is None else tuple(out)


def _soft(z, eps):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(-1, keepdims=True)
    k = z.shape[-1]
    return np.ascontiguousarray(p * np.float32(1 - eps + eps / k) + np.float32(eps / k), np.float32)


def random_resized_crop_boxes(n, size, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """torchvision RandomResizedCrop.get_params for n images of size (H, W): (n, 4) int rows
    (top, left, height, width), ten tries then the centre crop of the clamped ratio."""
    h0, w0 = size
    area, out = h0 * w0, np.empty((n, 4), np.int64)
    lr = np.log(ratio)
    for s in range(n):
        for _ in range(10):
            target = area * rng.uniform(*scale)
            ar = np.exp(rng.uniform(*lr))
            w, h = int(round(np.sqrt(target * ar))), int(round(np.sqrt(target / ar)))
            if 0 < w <= w0 and 0 < h <= h0:
                out[s] = (rng.integers(0, h0 - h + 1), rng.integers(0, w0 - w + 1), h, w)
                break
        else:
            r = w0 / h0
            w, h = (w0, int(round(w0 / min(ratio)))) if r < min(ratio) else \
                (int(round(h0 * max(ratio))), h0) if r > max(ratio) else (w0, h0)
            out[s] = ((h0 - h) // 2, (w0 - w) // 2, h, w)
    return out


def crop_resize(images, crops, out_size):
    """Crop (top, left, h, w) of every image (B, C, H, W) and resize it to out_size by RoIAlign with
    half-pixel alignment and one bilinear sample per output pixel: a bilinear resize (crops are never
    larger than the image, so this only upsamples)."""
    b = len(images)
    t, l_, h, w = (crops[:, j].astype(np.float32) for j in range(4))
    rois = np.stack([np.arange(b, dtype=np.float32), l_, t, l_ + w, t + h], 1)
    return _v.roi_align(_v.from_numpy(np.ascontiguousarray(images, np.float32)),
                        _v.from_numpy(np.ascontiguousarray(rois)), out_size, sampling_ratio=1, aligned=True).numpy()


class TokenLabelBatches:
    """Batches (images, class soft labels (B, K), token soft labels (B, N, K)) for token labeling.

    images (N, C, H, W) float32; label_map a LabelMap for them; grid the student's token grid; flip
    probability; crop scale of RandomResizedCrop (None: no crop, the whole image); smoothing ε; labels:
    'dense' (ReLabel pooled maps) or, with label_map None, every token takes the one-hot image label."""

    def __init__(self, images, labels, label_map, batch_size, grid, *, num_classes, seed=0, flip=0.5,
                 scale=(0.35, 1.0), smoothing=0.1, legacy_box_order=False, drop_last=True, randaug=None,
                 normalize=None, legacy_warp=False):
        self.images, self.labels = np.asarray(images, np.float32), np.asarray(labels, np.int64)
        # randaug: a vitc.data.RandAugment run after the flip and before the crop (the reference's order),
        # on images in [0, 1]; its geometric ops warp the label map too (legacy_warp: the reference's
        # half-cell-off index-space warp, relabel_augment). normalize=(mean, std) afterwards.
        self.randaug, self.normalize, self.legacy_warp = randaug, normalize, bool(legacy_warp)
        if label_map is not None and len(label_map) != len(self.images):
            raise ValueError(f"TokenLabelBatches: label map has {len(label_map)} entries, images {len(self.images)}")
        self.label_map, self.batch_size, self.grid = label_map, int(batch_size), tuple(grid)
        self.num_classes, self.flip, self.scale, self.smoothing = num_classes, flip, scale, smoothing
        self.legacy, self.drop_last, self.rng = legacy_box_order, drop_last, np.random.default_rng(seed)

    def __len__(self):
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        order = self.rng.permutation(len(self.images))
        for s in range(0, len(self) * self.batch_size, self.batch_size):
            yield self._batch(np.sort(order[s:s + self.batch_size]))

    def _batch(self, rows):
        x = self.images[rows]
        b, _, h0, w0 = x.shape
        flip = self.rng.uniform(size=b) < self.flip
        x = np.where(flip[:, None, None, None], x[..., ::-1], x)
        dense = None
        if self.label_map is not None:
            dense = self.label_map.dense(rows)
            dense = np.where(flip[:, None, None, None], dense[..., ::-1], dense)  # the map flips with the image
        if self.randaug is not None:
            x = self.randaug(np.ascontiguousarray(x), self.rng)
            if dense is not None:
                dense = warp_dense_maps(dense, self.randaug.last_plan, (h0, w0), self.randaug.translate_pct,
                                        legacy_warp=self.legacy_warp)
        if self.scale is not None:
            crops = random_resized_crop_boxes(b, (h0, w0), self.rng, self.scale)
            x = crop_resize(x, crops, (h0, w0))
        else:
            crops = np.tile(np.array([[0, 0, h0, w0]]), (b, 1))
        if self.normalize is not None:
            x = (x - np.float32(self.normalize[0])) / np.float32(self.normalize[1])
        x = _v.from_numpy(np.ascontiguousarray(x, np.float32))
        if dense is None:
            y = np.full((b, self.num_classes), self.smoothing / self.num_classes, np.float32)
            y[np.arange(b), self.labels[rows]] += np.float32(1 - self.smoothing)
            return x, _v.from_numpy(y), None
        boxes = np.stack([crops[:, 0] / h0, crops[:, 1] / w0, (crops[:, 0] + crops[:, 2]) / h0,
                          (crops[:, 1] + crops[:, 3]) / w0], 1)
        y_cls, y_tok = relabel_pool(dense, boxes, self.grid, self.smoothing, self.legacy)
        return x, _v.from_numpy(y_cls), _v.from_numpy(y_tok)
