"""The :class:`~multiworld.sim.base.Simulator` contract and every simulator behind it: the oracle,
the learned model, the private-state and stacked-frames baselines, the bounds, and external
simulators. Where one runs (in process or on Ray) is :mod:`multiworld.runtime`'s business."""
