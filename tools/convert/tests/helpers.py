"""Shared by the converter tests: the converter's folder on sys.path, quiet exports."""
import os
import sys
import warnings

CONVERT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(os.path.dirname(CONVERT))
if CONVERT not in sys.path:
    sys.path.insert(0, CONVERT)
warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")

import torch  # noqa: E402

torch.set_num_threads(1)  # the tests share two cores with everything else


def same_state(test, a, b):
    """Every tensor of state dict `a` equals `b`'s under the same name, bit for bit."""
    test.assertEqual(sorted(a), sorted(b))
    for k in a:
        test.assertTrue(torch.equal(a[k], b[k]), f"{k} differs")
