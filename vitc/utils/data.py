"""vitc.utils.data: vitc.data under PyTorch's path, so `from torch.utils.data import DataLoader` becomes
`from vitc.utils.data import DataLoader` by the rename torch -> vitc alone."""
from ..data import *  # noqa: F401,F403
from ..data import __all__  # noqa: F401
