"""What each benchmark suite times: one teacher -> student pair, its student-alone baseline, its methods, sizes.

Suites (``python tools/benchmark.py --suite NAME``):

* ``cls``: CIFAR-100 resnet32x4 -> resnet8x4 (CRD's Table 1 pair), every config of
  ``configs/cifar100/distill/resnet32x4-resnet8x4/``, baseline ``configs/cifar100/students/resnet8x4.py``,
  batch 64 (32 x 32 images) on CPU and CUDA.
* ``seg``: Cityscapes PSPNet-R101 -> PSPNet-R18 (structured KD): ``configs/cityscapes/pspnet_r18_*.py``, the
  pixel-wise ablation ``pi``, ``pi_pa`` (+ pair-wise), ``pi_pa_ho`` (+ holistic) and ``cwd``; CPU batch 2 at
  256 x 512, CUDA batch 2 per GPU at 512 x 1024 (the papers' crops).
* ``seg-cirkd``: the CIRKD-setting terms (``configs/cityscapes/cirkd/``). They are not written for the pair
  above: every CIRKD config distils a DeepLabV3-R101 teacher, and its PSPNet-R18 student has a 512-channel
  block (``psp_out_channels=512``) where the structured-KD student has 128. This suite is CIRKD's own
  DeepLabV3-R101 -> DeepLabV3-R18 pair, which has all six methods (kd, cwd, skd, ifvd, dist, cirkd); the
  ``pspnet_r18_{kd,dist,cirkd}`` configs of that folder share its teacher but not its student and are left out.
* ``depth``: NYU-Depth v2 FPN-R101 -> FPN-R18 (``configs/nyu/depth/r101-r18_*.py``, baseline
  ``student_fpn_r18.py``); CPU batch 2 at 224 x 288, CUDA the recipe's batch 8 at 416 x 544.
  ``r101-mbv2_depthkd.py`` distils another student (FPN-MobileNetV2) and is left out.

``--quick`` sizes (batch 2, tiny images) are for smoke runs and tests only. Targets are the issue's ratios of a
method's step to the bound (student step + teacher forward); they are reported, never asserted. A method
combining terms gets the target of its most expensive term kind (``pi_pa``: pair-wise).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# the targets: step / bound, by term kind
TARGETS = {"logit/feature": 1.05, "CRD": 1.10, "IRG": 1.05, "VID/FT": 1.05, "pixel-wise": 1.05, "pair-wise": 1.15,
           "holistic": 1.30, "cached teacher": 0.50}


@dataclass(frozen=True)
class Size:
    """Per-process batch and (for dense tasks) the training crop, height x width."""

    batch: int
    image: tuple[int, int] | None = None

    def describe(self) -> str:
        return f"batch {self.batch}" + (f" at {self.image[0]} x {self.image[1]}" if self.image else "")


@dataclass(frozen=True)
class Method:
    """A distillation config of the suite's pair; ``kind`` picks its target (None: the issue sets none)."""

    name: str
    config: str
    kind: str | None
    cached: bool = False  # trained from an offline teacher cache (tools/cache_teacher.py) written for the run
    options: tuple[str, ...] = ()  # --cfg-options of this row on top of its config (a variant without a file)

    @property
    def target(self) -> float | None:
        return TARGETS.get(self.kind) if self.kind else None


@dataclass(frozen=True)
class Suite:
    """A pair, its methods and sizes. ``image_keys``: the dataset keys an image size sets (the crop, and on
    synthetic data also the frame the stand-in draws); ``loader_method``: the method of the loader line."""

    name: str
    title: str
    student: str
    methods: tuple[Method, ...]
    loader_method: str
    sizes: dict[str, Size]
    image_keys: tuple[str, ...] = ()
    synthetic_image_keys: tuple[str, ...] = ()
    synthetic_length: int | None = None
    notes: tuple[str, ...] = field(default=())

    def method(self, name: str) -> Method:
        """The method called ``name`` (any case); a one-line LookupError listing the valid names otherwise."""
        for m in self.methods:
            if m.name.lower() == name.lower():
                return m
        raise LookupError(f"unknown method {name!r} for suite {self.name!r}; valid: "
                          + ", ".join(m.name for m in self.methods))

    def size_options(self, size: Size) -> list[str]:
        """``--cfg-options`` strings that set the batch of ``size`` in every config of the suite."""
        return [f"data.batch_size={size.batch}"]

    def dataset_settings(self, size: Size, synthetic: bool) -> dict:
        """Keys to set on the training images' dataset (the innermost one, under any wrapper such as CRD's):
        the image size, and on synthetic data the stand-in's frame size and length."""
        settings = {}
        if size.image is not None:
            keys = self.image_keys + (self.synthetic_image_keys if synthetic else ())
            settings.update({key: tuple(size.image) for key in keys})
        if synthetic and self.synthetic_length:
            settings["num_samples"] = self.synthetic_length
        return settings


def _cls_methods() -> tuple[Method, ...]:
    """Every config of the CIFAR-100 resnet32x4 -> resnet8x4 folder (a new config joins the suite by itself)."""
    folder = "configs/cifar100/distill/resnet32x4-resnet8x4"
    names = {"fitnet": "FitNet", "reviewkd": "ReviewKD"}
    kinds = {"crd": "CRD", "crd_kd": "CRD", "irg": "IRG", "vid": "VID/FT", "ft": "VID/FT"}
    methods = tuple(Method(names.get(p.stem, p.stem.upper()), f"{folder}/{p.name}", kinds.get(p.stem, "logit/feature"))
                    for p in sorted((ROOT / folder).glob("*.py")))
    # KD with the teacher's logits read from an offline cache instead of a teacher forward
    return methods + (Method("KD_cached", f"{folder}/kd.py", "cached teacher", cached=True),)


def _methods(folder: str, rows: list[tuple]) -> tuple[Method, ...]:
    """Methods from (name, config file stem under ``folder``, target kind[, cfg options]) rows."""
    return tuple(Method(name, f"{folder}/{stem}.py", kind, options=tuple(rest[0]) if rest else ())
                 for name, stem, kind, *rest in rows)


def _cityscapes(name: str, title: str, folder: str, student: str, rows: list, notes: tuple[str, ...]) -> Suite:
    """A Cityscapes suite: its sizes, the keys that set them (the synthetic stand-in draws frames of
    ``image_size``), the stand-in's length (the 2975 training frames); the first method is the loader line's."""
    return Suite(name=name, title=title, student=f"{folder}/{student}.py", methods=_methods(folder, rows),
                 loader_method=rows[0][0], notes=notes, image_keys=("crop_size",),
                 synthetic_image_keys=("image_size",), synthetic_length=2975,
                 sizes={"cpu": Size(2, (256, 512)), "cuda": Size(2, (512, 1024)), "quick": Size(2, (64, 128))})


SUITES: dict[str, Suite] = {
    "cls": Suite(
        name="cls", title="CIFAR-100 resnet32x4 -> resnet8x4",
        student="configs/cifar100/students/resnet8x4.py", methods=_cls_methods(), loader_method="KD",
        sizes={"cpu": Size(64), "cuda": Size(64), "quick": Size(2)},
        # CIFAR-100's 50000 training images: CRD's memory banks (and its scoring choice) depend on the length
        synthetic_length=50000),
    "seg": _cityscapes(
        "seg", "Cityscapes PSPNet-R101 -> PSPNet-R18 (structured KD)", "configs/cityscapes", "pspnet_r18_baseline",
        [("PI", "pspnet_r18_pi", "pixel-wise"), ("PI_PA", "pspnet_r18_pi_pa", "pair-wise"),
         # the full-map pair-wise term: every decoder pixel a node (64 x 128 nodes per image at 512 x 1024)
         ("PI_PA_full", "pspnet_r18_pi_pa", "pair-wise", ["distill.1.scale=None"]),
         ("PI_PA_HO", "pspnet_r18_pi_pa_ho", "holistic"), ("CWD", "pspnet_r18_cwd", "logit/feature")],
        ("The CIRKD-setting configs (configs/cityscapes/cirkd/) distil a DeepLabV3-R101 teacher into other "
         "students, not this pair: see --suite seg-cirkd.",)),
    "seg-cirkd": _cityscapes(
        "seg-cirkd", "Cityscapes DeepLabV3-R101 -> DeepLabV3-R18 (CIRKD's setting)", "configs/cityscapes/cirkd",
        "deeplabv3_r18_baseline",
        [("KD", "deeplabv3_r18_kd", "pixel-wise"), ("CWD", "deeplabv3_r18_cwd", "logit/feature"),
         ("IFVD", "deeplabv3_r18_ifvd", "logit/feature"), ("DIST", "deeplabv3_r18_dist", "logit/feature"),
         ("SKD", "deeplabv3_r18_skd", "holistic"), ("CIRKD", "deeplabv3_r18_cirkd", None)],
        ("configs/cityscapes/cirkd/pspnet_r18_{kd,dist,cirkd}.py share this teacher but distil a PSPNet-R18 "
         "student; they are not in a suite.", "The issue sets no target for CIRKD's cross-image relation terms.")),
    "depth": Suite(
        name="depth", title="NYU-Depth v2 FPN-R101 -> FPN-R18",
        student="configs/nyu/depth/student_fpn_r18.py",
        methods=_methods("configs/nyu/depth", [("DepthKD", "r101-r18_depthkd", "pixel-wise"),
                                               ("DepthKD_confidence", "r101-r18_depthkd_confidence", "pixel-wise"),
                                               ("DepthKD_silog", "r101-r18_depthkd_silog", "pixel-wise"),
                                               ("AT", "r101-r18_at", "logit/feature"),
                                               ("FitNet", "r101-r18_fitnet", "logit/feature"),
                                               ("CWD", "r101-r18_cwd", "logit/feature"),
                                               ("PairWise", "r101-r18_pairwise", "pair-wise"),
                                               ("Holistic", "r101-r18_holistic", "holistic")]),
        loader_method="DepthKD",
        sizes={"cpu": Size(2, (224, 288)), "cuda": Size(8, (416, 544)), "quick": Size(2, (64, 96))},
        image_keys=("crop_size",), synthetic_image_keys=("size",),
        notes=("configs/nyu/depth/r101-mbv2_depthkd.py distils an FPN-MobileNetV2 student, not this pair; it is "
               "not in the suite.",)),
}
