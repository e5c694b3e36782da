"""Importers: trained PyTorch spiking networks to NIR, exactly or not at all.

- :mod:`snn2chip.importers.builder`: the :class:`~snn2chip.importers.builder.Builder` that turns
  a walk over a network's modules into NIR nodes and edges (shared with ``models/export.py``);
- :mod:`snn2chip.importers.spikingjelly`: spikingjelly 2.0 networks
  (:func:`snn2chip.from_spikingjelly`), with :mod:`~snn2chip.importers.sj_blocks` (how its
  residual models compute) and :mod:`~snn2chip.importers.sj_check` (spikingjelly vs the NIR
  graph on the same inputs).

Nothing here is imported by ``import snn2chip``; spikingjelly is imported only by
:mod:`~snn2chip.importers.spikingjelly`.
"""
