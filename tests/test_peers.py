"""Peer check: snn2chip's float reference executor against nirtorch on real NIR files.

The same NIR file is executed by ``snn2chip.run`` and by the torch.fx module that
``nirtorch.nir_to_torch`` (nirtorch 2.6) builds from ``nir.read(path)``, stepped one time step
at a time as ``out, state = module(x_t, state)``. Spikes must agree exactly, on every spiking
node and at the output, and the inputs are chosen so that the networks really spike.

nirtorch has no neuron models, so the IF and CubaLIF modules below are written here directly
from the NIR equations (forward Euler at step ``dt``, strict threshold, reset to ``v_reset``,
states starting at zero), independently of ``snn2chip.neurons``.

nirtorch 2.6 bugs (all in ``nirtorch/nir_interpreter.py``) and how this file works around them;
``test_nirtorch_bug_*`` below fail if a bug goes away, so that this list stays true:

1. Affine bias is never loaded. ``_default_map_affine`` builds ``torch.nn.Linear(..., bias=True)``
   and then assigns ``module.weight.bias = torch.from_numpy(linear.bias)``: that only sets a
   stray attribute on the weight Parameter, while ``module.bias`` keeps torch's random
   initialisation. Every Affine node then adds a random bias (even in the sinabs file, whose
   biases are all zero). Workaround: ``node_map`` maps ``nir.Affine`` to ``affine_module``,
   which loads ``module.bias``.
2. Flatten flattens the batch axis. ``_default_map_flatten`` returns
   ``torch.nn.Flatten(start_dim=flatten.start_dim, end_dim=flatten.end_dim)`` with NIR's dims,
   which do not count the batch axis; the modules run on batched tensors, so the sinabs node
   ``8`` (``start_dim=0, end_dim=-1``) turns ``(batch, 8, 4, 4)`` into ``(batch*128,)`` and the
   next Affine fails on any batch > 1 (with batch 1 it silently drops the batch axis).
   Workaround: ``flatten_module`` shifts non-negative dims by one (negative dims count from the
   end and are unaffected by a leading batch axis).
3. SumPool2d ignores padding. ``_default_map_sumpool2d`` maps it to
   ``torch.nn.LPPool2d(norm_type=1, kernel_size, stride)`` and drops ``pool.padding`` (a
   "TODO" in the source), so a padded SumPool2d gets the wrong output size and values. Not a
   problem here: both SumPool2d nodes of the sinabs file have padding 0 (asserted below), and
   LPPool2d with ``norm_type=1`` computes ``avg_pool2d(x) * (kh*kw)``, which for a 2x2 kernel on
   spike counts is exactly the sum. So the default mapping is kept.
4. (Not hit, noted only.) ``_default_map_conv1d``/``_default_map_conv2d`` pass
   ``weight.shape[-4]`` (NIR's out_channels) as ``in_channels`` and ``weight.shape[-3]`` (in/groups)
   as ``out_channels``. The weight tensor is then replaced by NIR's, so the forward pass is
   right for the convolutions here (groups = 1), but the module's channel attributes are swapped
   and e.g. a depthwise convolution (weight ``(C, 1, k, k)``, groups = C) raises "out_channels
   must be divisible by groups".

Recurrence: nirtorch detects the cycle ``lif1.lif -> lif1.w_rec -> lif1.lif`` of the Braille
network and feeds ``lif1.lif`` with ``state.get("lif1_w_rec_prev_output", torch.zeros(1))``, i.e.
``w_rec``'s output of the previous step (zero at step 0), plus ``fc1``'s output of the current
step; it stores ``w_rec``'s new output in the state after computing it. That is snn2chip's rule
(a recurrent edge delivers its source's value from the previous step), so the two are directly
comparable, including ``w_rec``'s bias entering from step 1 on.

nirtorch replaces "." by "_" in module names (``lif1.lif`` -> ``lif1_lif``); spikes of inner
nodes are read with forward hooks on the mapped modules.
"""

from __future__ import annotations

from pathlib import Path

import nir
import nirtorch
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nirtorch.nir_interpreter import DEFAULT_MAP

import snn2chip

from tests.conftest import BRAILLE
from tests.conftest import SINABS as CNN

BRAILLE_DT = 1e-4  # snnTorch exported the Braille network's time constants in seconds at dt = 1e-4

# --- NIR neuron models for nirtorch, written from the NIR equations ----------------------------


def _buffer(module: torch.nn.Module, node: nir.NIRNode, field: str) -> None:
    module.register_buffer(field, torch.tensor(np.asarray(getattr(node, field), dtype=np.float64)))


class IFModule(torch.nn.Module):
    """nir.IF at step dt: ``v <- v + dt*r*x``; ``s = v > v_threshold``; ``v <- v_reset`` where s."""

    def __init__(self, node: nir.IF, dt: float):
        super().__init__()
        self.dt = dt
        for field in ("r", "v_threshold", "v_reset"):
            _buffer(self, node, field)

    def forward(self, x, state=None):
        v = torch.zeros_like(x) if state is None else state
        v = v + self.dt * self.r * x
        spikes = v > self.v_threshold
        v = torch.where(spikes, self.v_reset, v)
        return spikes.to(x.dtype), v


class CubaLIFModule(torch.nn.Module):
    """nir.CubaLIF at step dt: ``i <- i + dt/tau_syn*(w_in*x - i)``;
    ``v <- v + dt/tau_mem*(v_leak - v + r*i)`` (with the new i); spike and reset as IF."""

    def __init__(self, node: nir.CubaLIF, dt: float):
        super().__init__()
        self.dt = dt
        for field in ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"):
            _buffer(self, node, field)

    def forward(self, x, state=None):
        i, v = (torch.zeros_like(x), torch.zeros_like(x)) if state is None else state
        i = i + self.dt / self.tau_syn * (self.w_in * x - i)
        v = v + self.dt / self.tau_mem * (self.v_leak - v + self.r * i)
        spikes = v > self.v_threshold
        v = torch.where(spikes, self.v_reset, v)
        return spikes.to(x.dtype), (i, v)


# --- corrected replacements for nirtorch's default mappings (bugs 1 and 2 above) ----------------


def affine_module(node: nir.Affine) -> torch.nn.Linear:
    module = torch.nn.Linear(node.weight.shape[1], node.weight.shape[0], bias=True)
    module.weight.data = torch.tensor(node.weight)
    module.bias.data = torch.tensor(np.asarray(node.bias)).reshape(-1).expand(node.weight.shape[0]).clone()
    return module


def flatten_module(node: nir.Flatten) -> torch.nn.Flatten:
    def batched(dim) -> int:
        dim = int(dim)
        return dim + 1 if dim >= 0 else dim

    return torch.nn.Flatten(start_dim=batched(node.start_dim), end_dim=batched(node.end_dim))


def node_map(dt: float) -> dict:
    return {
        nir.IF: lambda node: IFModule(node, dt),
        nir.CubaLIF: lambda node: CubaLIFModule(node, dt),
        nir.Affine: affine_module,
        nir.Flatten: flatten_module,
    }


# --- helpers ------------------------------------------------------------------------------------


def run_nirtorch(path: Path, dt: float, x: torch.Tensor, dtype: torch.dtype, record: list[str]):
    """Step nirtorch's module over ``x`` (batch, time, ...): (output, {node: spikes}, last state)."""
    module = nirtorch.nir_to_torch(nir.read(path), node_map(dt), dtype=dtype)
    recorded: dict[str, list[torch.Tensor]] = {name: [] for name in record}
    for name in record:
        module.get_submodule(name.replace(".", "_")).register_forward_hook(
            lambda _module, _inputs, output, name=name: recorded[name].append(output[0].clone())
        )
    outputs, state = [], None
    with torch.no_grad():
        for step in range(x.shape[1]):
            out, state = module(x[:, step].to(dtype), state)
            outputs.append(out)
    spikes = {name: torch.stack(values, dim=1).numpy() for name, values in recorded.items()}
    return torch.stack(outputs, dim=1).numpy(), spikes, state


def assert_same_spikes(ours: np.ndarray, theirs: np.ndarray, node: str) -> None:
    assert ours.shape == theirs.shape, f"{node}: shapes {ours.shape} (snn2chip) vs {theirs.shape} (nirtorch)"
    differ = np.argwhere(ours != theirs)
    if len(differ):
        b, t, *index = differ[0]
        pytest.fail(
            f"{node}: {len(differ)} of {ours.size} spikes differ; first at batch {b}, step {t}, "
            f"index {tuple(index)}: snn2chip {ours[tuple(differ[0])]}, nirtorch {theirs[tuple(differ[0])]}"
        )


def bernoulli(shape, p: float, seed: int) -> torch.Tensor:
    return torch.bernoulli(torch.full(shape, p), generator=torch.Generator().manual_seed(seed))


# --- peer comparisons ---------------------------------------------------------------------------


# IF at dt = 1, r = 1 is ``v + x`` in both executors, the convolutions and Affines are the same
# torch calls, and the 2x2 LPPool2d equals the sum exactly on spikes: the arithmetic is identical,
# so the spikes are identical in float32 as well as float64.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_sinabs_cnn_spikes_match_nirtorch(dtype):
    graph = snn2chip.load(CNN)
    if_nodes = [name for name, node in graph.nodes.items() if isinstance(node, nir.IF)]
    assert if_nodes == ["1", "3", "6", "10", "12"]
    x = bernoulli((8, 20, 2, 34, 34), 0.3, seed=1234)  # N-MNIST-like ON/OFF events

    ours = snn2chip.run(graph, x.numpy(), dt=1.0, record=if_nodes + ["output"], dtype=dtype)
    output, spikes, _ = run_nirtorch(CNN, 1.0, x, dtype, if_nodes)

    for name in if_nodes:
        assert_same_spikes(ours[name], spikes[name], name)
    assert_same_spikes(ours["output"], output, "output")
    # Not vacuous: every IF layer spikes, and the output layer spikes for several classes.
    for name in if_nodes:
        assert ours[name].sum() > 0, f"IF node {name} never spikes"
    assert ours["output"].sum() >= 20
    assert (ours["output"].sum(axis=(0, 1)) > 0).sum() >= 3


# The CubaLIF updates are algebraically equal but rounded differently (snn2chip precomputes
# decay = 1 - dt/tau and gain = dt/tau*w_in, resp. dt/tau*r; here the NIR form is evaluated), so
# agreement relies on no membrane potential landing within rounding error of the threshold. For
# this input the closest approach is |v - v_threshold| ~ 5e-6 (lif2), far above float64 rounding
# and still ~50x float32's, so both precisions agree exactly; float64 is the authoritative case
# should a different input ever hit a float32 threshold tie.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_braille_recurrent_cubalif_spikes_match_nirtorch(dtype):
    graph = snn2chip.load(BRAILLE)
    assert graph.recurrent == {("lif1.w_rec", "lif1.lif")}
    # Sparse tactile events: this network's inputs mostly inhibit lif1 (at p >= 0.5 it falls
    # silent), so p = 0.05 keeps lif1, and with it the recurrent edge, active.
    x = bernoulli((8, 50, 12), 0.05, seed=0)

    ours = snn2chip.run(graph, x.numpy(), dt=BRAILLE_DT, record=["lif1.lif", "lif2", "output"], dtype=dtype)
    output, spikes, state = run_nirtorch(BRAILLE, BRAILLE_DT, x, dtype, ["lif1.lif", "lif2"])
    assert "lif1_w_rec_prev_output" in state  # nirtorch fed the recurrent edge from the previous step

    assert_same_spikes(ours["lif1.lif"], spikes["lif1.lif"], "lif1.lif")
    assert_same_spikes(ours["lif2"], spikes["lif2"], "lif2")
    assert_same_spikes(ours["output"], output, "output")
    # Not vacuous: lif1 spikes in every sample (so w_rec's weights are exercised, not only its
    # bias), the output spikes, and the output depends on the input.
    assert ours["lif1.lif"].sum(axis=(1, 2)).min() >= 10
    assert (ours["lif1.lif"].sum(axis=(0, 1)) > 0).sum() >= 5
    assert ours["output"].sum() >= 100
    assert len({ours["output"][b].tobytes() for b in range(x.shape[0])}) == x.shape[0]


# --- guards for the documented nirtorch bugs ------------------------------------------------------


@pytest.mark.parametrize("path", [CNN, BRAILLE], ids=["sinabs", "braille"])
def test_nirtorch_bug_affine_bias_not_loaded(path):
    affines = {name: node for name, node in nir.read(path).nodes.items() if isinstance(node, nir.Affine)}
    assert affines
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for name, node in affines.items():
            bias = torch.from_numpy(np.asarray(node.bias))
            default = DEFAULT_MAP[nir.Affine](node)
            assert not torch.equal(default.bias.data, bias), f"{name}: nirtorch now loads the Affine bias"
            assert torch.equal(default.weight.bias, bias)  # where nirtorch put it instead
            assert torch.equal(default.weight.data, torch.from_numpy(node.weight))
            assert torch.equal(affine_module(node).bias.data, bias)


def test_nirtorch_bug_flatten_includes_batch_axis():
    graph = snn2chip.load(CNN)
    node = graph.nodes["8"]
    assert (int(node.start_dim), int(node.end_dim)) == (0, -1)
    assert graph.in_shapes["8"] == (8, 4, 4) and graph.out_shapes["8"] == (128,)
    x = torch.zeros(8, 8, 4, 4)
    assert DEFAULT_MAP[nir.Flatten](node)(x).shape == (8 * 128,)  # batch axis flattened away
    assert flatten_module(node)(x).shape == (8, 128)
    # With the default Flatten the whole network fails on a batch (Affine 9 gets a 1024-vector).
    module = nirtorch.nir_to_torch(nir.read(CNN), {nir.IF: lambda n: IFModule(n, 1.0), nir.Affine: affine_module})
    with pytest.raises(RuntimeError):
        module(torch.zeros(8, 2, 34, 34), None)


def test_nirtorch_bug_sumpool2d_ignores_padding():
    padded = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([1, 1]))
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    expected = F.avg_pool2d(x, 2, 2, padding=1, divisor_override=1)
    assert expected.shape == (1, 1, 3, 3)
    assert DEFAULT_MAP[nir.SumPool2d](padded)(x).shape == (1, 1, 2, 2)  # padding dropped
    # The sinabs file only has unpadded 2x2 SumPool2d, where the default mapping is exact.
    pools = [node for node in nir.read(CNN).nodes.values() if isinstance(node, nir.SumPool2d)]
    assert len(pools) == 2
    for pool in pools:
        assert np.all(np.asarray(pool.padding) == 0)
        assert np.all(np.asarray(pool.kernel_size) == 2)
        unpadded = DEFAULT_MAP[nir.SumPool2d](pool)
        counts = torch.randint(0, 5, (2, 3, 8, 8), generator=torch.Generator().manual_seed(0)).float()
        assert torch.equal(unpadded(counts), F.avg_pool2d(counts, 2, 2, divisor_override=1))
