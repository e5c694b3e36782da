"""Train spikingjelly's MS-ResNet-18 (width 16) on scikit-learn's digits, then export it to NIR."""
import time

import numpy as np
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.model import ms_resnet

import snn2chip
from snn2chip.verify.data import digits_split

torch.manual_seed(0)
x_train, y_train, x_test, y_test = (torch.as_tensor(np.array(a)) for a in digits_split())
model = ms_resnet.ms_resnet18(T=4, in_channels=1, num_classes=10, base_channels=16,
                              stem_kernel_size=3, stem_stride=1)
optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
start = time.time()
for epoch in range(8):
    model.train()
    for batch in torch.randperm(len(x_train)).split(64):
        loss = F.cross_entropy(model(x_train[batch]), y_train[batch])   # forward: mean of the head over T
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        functional.reset_net(model)
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    functional.reset_net(model)
    print(f"epoch {epoch}: test accuracy {accuracy:.4f} ({time.time() - start:.0f} s)")

snn2chip.from_spikingjelly(model, x_test[:2], "ms18_digits.nir")
torch.save(model.state_dict(), "ms18_digits.pt")
