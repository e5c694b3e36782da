"""Check the exported NIR file against spikingjelly, layer by layer, on the 450 digits test images (run after train_ms.py)."""
import numpy as np
import torch
from spikingjelly.activation_based.model import ms_resnet

from snn2chip.importers.sj_check import compare
from snn2chip.importers.spikingjelly import fold_batchnorm
from snn2chip.verify.data import digits_split

model = ms_resnet.ms_resnet18(T=4, in_channels=1, num_classes=10, base_channels=16, stem_kernel_size=3, stem_stride=1)
model.load_state_dict(torch.load("ms18_digits.pt"))
model.eval()
x_test = torch.as_tensor(np.array(digits_split()[2]))
x = x_test.unsqueeze(0).repeat(4, 1, 1, 1, 1)                  # (T, N, C, H, W): the images held for 4 steps
for name, m in (("BatchNorm folded", fold_batchnorm(model, x)), ("as trained", model)):
    result = compare(m, "ms18_digits.nir", x)
    differing = sum(n.mismatches for n in result.spiking)
    print(f"{name}: {len(result.spiking)} spiking layers, {sum(n.spikes for n in result.spiking):,} spikes, "
          f"{differing} differ; head: largest difference {result.head_difference:.2e}")
