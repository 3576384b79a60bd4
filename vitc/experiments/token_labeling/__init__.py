"""python -m vitc.experiments.token_labeling: seed 000 §21's LV-ViT claims, token labeling (dense labels
from a teacher, ReLabel pooling, MixToken) and the architecture changes (conv stem, skip_lam), on
Fashion-MNIST.

1. the teacher: ``resnet_mnist`` trained here (crop + flip, AdamW) or loaded with ``--teacher``; its
   accuracy is reported beside the students' (it must beat the plain student to be worth distilling);
2. its label map: per image, the top-5 (score, class) of the classifier applied to every cell of the
   7×7 pre-pool feature map (vitc.data.relabel.generate_label_map), tied to the data set's checksum;
3. the arms, each over several seeds, the same ``lvvit_tiny_mnist``-shaped student (7×7 token grid),
   the same crop (RandomResizedCrop boxes) + flip pipeline and schedule:
   plain (image label, CE), cutmix (+ CutMix on images), relabel (class label = the map pooled in the
   crop, no aux head), tl (aux head + token labels, β 0.5), tl_mixtoken (+ MixToken), control (aux head
   trained on the image label for every token + MixToken: does the dense label or the extra head carry
   the gain?), and the architecture path linear (linear patch embedding) → plain (conv stem) → skip
   (conv stem + skip_lam 2), all with plain CE;
4. per-arm mean and spread of the test accuracy, ``results.md`` / ``results.json`` / figures under
   ``--out``; each finished (arm, seed) is saved and skipped on a rerun (resumable); MLflow tracking
   unless ``--no-mlflow``. See docs/results/token_labeling/README.md.
"""
from .cli import ARMS, build_parser, main

__all__ = ["main", "build_parser", "ARMS"]
