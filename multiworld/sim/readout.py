"""The model backend's readout: the symbolic state and the events read out of the latent state.

The decoder heads measure the latent state; what they read is never fed back into it.
"""

from __future__ import annotations

import numpy as np
import torch

from multiworld.world.state import WorldState


def decode_state(model, latent, ref: WorldState) -> WorldState:
    """The symbolic state read out of ``latent`` by the decoder heads (measurement only).

    Walls, floor, goals, boxes and items come from the cell heads; agent poses from the agent
    tokens. Object identities (list order) follow ``ref``, the previous readout: a box that is no
    longer on a decoded box cell moves to the nearest free decoded box cell; an item is alive
    while its cell decodes as an item."""
    with torch.no_grad():
        dec = {k: v.cpu().numpy() for k, v in model.heads.decode(latent.scene).items()}
    out = ref.copy()
    out.walls = dec["wall"].astype(np.uint8)
    out.floor = dec["floor"].astype(np.uint8)
    out.goals = dec["goal"].astype(bool)
    out.poses = latent.poses.detach().float().cpu().numpy().astype(np.float32)
    b = np.arange(ref.num_worlds)[:, None]
    if ref.items.shape[1]:
        out.items_alive = ref.items_alive & dec["item"][b, ref.items[..., 0], ref.items[..., 1]].astype(bool)
    for w in range(ref.num_worlds):
        cells = {tuple(c) for c in np.argwhere(dec["box"][w])}
        keep = [tuple(c) in cells for c in ref.boxes[w]]
        free = cells - {tuple(c) for c, k in zip(ref.boxes[w], keep) if k}
        for m in np.flatnonzero(~np.array(keep, bool)):
            if not free:
                break
            c = min(free, key=lambda x, m=m: abs(x[0] - ref.boxes[w, m, 0]) + abs(x[1] - ref.boxes[w, m, 1]))
            out.boxes[w, m] = c
            free.discard(c)
    return out


def event_dicts(before: WorldState, after: WorldState, push: np.ndarray, pick: np.ndarray, names: list[str]):
    """Per world, the event dicts of the model's push and pickup heads, with the box or item
    identified from the readouts before and after (the one that changed nearest the agent)."""
    out = []
    for w in range(after.num_worlds):
        events = []
        moved = np.flatnonzero(np.any(before.boxes[w] != after.boxes[w], axis=-1))
        taken = np.flatnonzero(before.items_alive[w] & ~after.items_alive[w])
        cell = np.stack([np.floor(after.poses[w, :, 1]), np.floor(after.poses[w, :, 0])], -1)
        for i, name in enumerate(names):
            if push[w, i]:
                if len(moved):
                    m = moved[np.argmin(np.abs(before.boxes[w, moved] - cell[i]).sum(-1))]
                    events.append(
                        {
                            "type": "push",
                            "agent": name,
                            "box": int(m),
                            "from": before.boxes[w, m].tolist(),
                            "to": after.boxes[w, m].tolist(),
                        }
                    )
                else:
                    events.append({"type": "push", "agent": name, "box": -1, "from": [-1, -1], "to": [-1, -1]})
            if pick[w, i]:
                pool = taken if len(taken) else np.flatnonzero(before.items_alive[w])
                item = int(pool[np.argmin(np.abs(before.items[w, pool] - cell[i]).sum(-1))]) if len(pool) else -1
                events.append({"type": "pickup", "agent": name, "item": item})
        out.append(events)
    return out
