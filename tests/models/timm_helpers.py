"""One comparison for the timm tests: a timm model and a vitc model in eval mode on the same batch."""
import numpy as np
import torch

import vitc


def assert_same_outputs(tm, vm, x, features=False, tol=1e-4):
    """tm(x) and vm(x) (or their forward_features) agree to ``tol``; x a NumPy batch."""
    tm.eval()
    vm.eval()
    with torch.no_grad():
        want = (tm.forward_features if features else tm)(torch.from_numpy(x)).numpy()
    with vitc.no_grad():
        got = (vm.forward_features if features else vm)(vitc.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
