"""Distillation losses: ``forward(student, teacher, **extra) -> scalar``. See DESIGN.md, "Loss API"."""
from densekd.losses.logits import *  # noqa: F401,F403
from densekd.losses.features import *  # noqa: F401,F403
from densekd.losses.two_stage import *  # noqa: F401,F403
from densekd.losses.relations import *  # noqa: F401,F403
from densekd.losses.contrastive import *  # noqa: F401,F403
from densekd.losses.dense import *  # noqa: F401,F403
from densekd.losses.adversarial import *  # noqa: F401,F403
from densekd.losses.depth import *  # noqa: F401,F403
from densekd.losses.cirkd import *  # noqa: F401,F403
