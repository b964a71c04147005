"""Model zoo. Importing this package registers every model in ``densekd.registry.MODELS``."""
from densekd.models import cifar, depth, ensemble, multitask, seg, simple, torchvision_zoo  # noqa: F401
