"""The state update's third stage: agents write the scene cells around them.

Each agent sends a message to the 5 x 5 cells around its new position (its features, which cell of
the window, where it was and is inside its cell); the cells that received messages are updated
residually from their token, their neighbours and the summed messages, and snapped back to the
lattice; cells no agent is near keep their token exactly.

``push_message`` (third edition): an agent whose push the model judged fired also sends a push
message (its heading and which cell of the window), and writes each cell of its window directly: a
token change read from the cell's token, the heading and the cell's place (a box token ahead turns
to floor, the floor beyond to box). Both are zero until trained, so the box the judgement pushed can
move in the scene: without them the messages came from the agent's features alone, which do not
carry the push judgement's answer, and a pushed box stayed where it was (an agent could push it,
and be paid, again and again).

``pick_write``: an agent whose pickup the model judged fired writes each cell of its window the same
way (a token change read from the cell's token and place), zero until trained: the pickup judgement
reads the scene, not the agent's features, so without it the item's cell could still read as an
item the step after its pickup (and be picked, and paid, again).

``push_write="quarter"``: the push write reads its window in the frame of the pusher's heading quarter
(hand-fixed, as the worth judgement reads it): each cell's place as seen facing along the quarter,
the heading's turn from the quarter, the agent's place in its cell turned likewise. The arena pushes
the box ahead by the heading's quarter into the cell beyond, so "ahead" and "beyond" are the same
two inputs whichever way the agent faces; in the world frame the write must find the quarter's
edge (45 degrees off) in the heading's sine and cosine itself.
"""

from __future__ import annotations

import torch

from multiworld.models.geometry import gather_cells, window_offsets
from multiworld.models.heads import CELL_KEYS
from multiworld.models.motion import heading_quarter, mlp
from multiworld.models.quantize import snap


def add_writers(dyn, cfg, d: int, h: int, m: int, radius: int) -> None:
    """The state-update model ``dyn``'s push message and write (``cfg.push_message``) and pickup
    write (``cfg.pick_write``): ``d`` the token width, ``h`` the agent features', ``m`` the messages',
    ``radius`` the window's (cells on each side of the agent's)."""
    quarter = cfg.push_write == "quarter"
    dyn.send_push = mlp(2 + 16 + 4, h // 2, m) if cfg.push_message else None
    dyn.write_push = mlp(d + 2 + 16 + 4 + 2 * quarter, h // 2, d) if cfg.push_message else None
    if quarter:  # each window cell's index and offset in the frame of each heading quarter
        dyn.register_buffer("quarter_cells", quarter_frames(radius), persistent=False)
    dyn.write_pick = mlp(d + 16 + 4, h // 2, d) if cfg.pick_write else None
    for net in (dyn.send_push, dyn.write_push, dyn.write_pick):
        if net is not None:  # zero until trained: the scene update starts as it was
            torch.nn.init.zeros_(net[-1].weight)
            torch.nn.init.zeros_(net[-1].bias)


def quarter_frames(radius: int) -> torch.Tensor:
    """``(4, K, 3)`` long: for heading quarter q (east, south, west, north) and the window's cell k
    (``window_offsets(radius)``, world frame), the index of the same cell in the quarter's frame and
    its (d_row, d_col) there; the cell ahead by the quarter is (0, 1) in every frame."""
    near = window_offsets(radius)
    frames, off = [], near
    for _ in range(4):  # world (row, col) -> the frame of one more quarter: (row, col) -> (-col, row)
        index = ((off[:, None] == near[None]).all(-1)).float().argmax(-1)
        frames.append(torch.cat([index[:, None], off], -1))
        off = torch.stack([-off[:, 1], off[:, 0]], -1)
    return torch.stack(frames)


def _turn_xy(v: torch.Tensor, quarter: torch.Tensor) -> torch.Tensor:
    """Offsets ``(..., 2)`` (x, y) turned from the world into the frame of ``quarter (...)``."""
    for q in range(1, 4):
        v = torch.where((quarter >= q)[..., None], torch.stack([v[..., 1], -v[..., 0]], -1), v)
    return v


def _push_inputs(dyn, tokens, heading, new_heading, where, frac) -> torch.Tensor:
    """What the push write reads per window cell ``(B, N, K, ...)``: in the world frame (the cell's
    token, ``heading``, the expanded sine and cosine, and ``where``) or (``push_write="quarter"``)
    in the frame of the heading's quarter."""
    win = tokens.shape[2]
    if dyn.cfg.push_write != "quarter":
        return torch.cat([tokens, heading, where], -1)
    q = heading_quarter(new_heading).long()  # (B, N)
    turn = new_heading - q.to(new_heading.dtype) * (torch.pi / 2)
    frame = dyn.quarter_cells[q]  # (B, N, K, 3)
    place = torch.cat([_turn_xy(frac[..., :2] - 0.5, q), _turn_xy(frac[..., 2:] - 0.5, q)], -1)
    feats = [tokens, torch.stack([turn.sin(), turn.cos()], -1)[:, :, None].expand(-1, -1, win, -1)]
    feats += [dyn.offset.weight[frame[..., 0]], place[:, :, None].expand(-1, -1, win, -1)]
    return torch.cat([*feats, frame[..., 1:].to(tokens.dtype)], -1)


def write_scene(dyn, scene, xy, new_xy, new_heading, h2, pushed, picked=None) -> torch.Tensor:
    """The next scene ``(B, S, S, D)``: ``dyn`` is the state-update model (its ``send``, ``offset``,
    ``cell`` and the writers of :func:`add_writers`), ``xy``/``new_xy`` ``(B, N, 2)`` the agents'
    positions before and after the move, ``h2 (B, N, H)`` their features, ``pushed``/``picked (B, N)``
    whether the model's push and pickup fired."""
    bsz, s_ = scene.shape[0], scene.shape[1]
    cells = dyn._cells(new_xy)  # (B, N, 25, 2)
    n, win = cells.shape[1], cells.shape[2]
    inside = ((cells >= 0) & (cells < s_)).all(-1)
    frac = torch.cat([(xy - new_xy.floor()).clamp(-2, 3), new_xy - new_xy.floor()], -1)
    where = torch.cat(
        [dyn.offset.weight[None, None].expand(bsz, n, -1, -1), frac[:, :, None].expand(-1, -1, win, -1)], -1
    )
    msg = dyn.send(torch.cat([h2[:, :, None].expand(-1, -1, win, -1), where], -1))
    heading = None
    if dyn.send_push is not None:
        heading = torch.stack([new_heading.sin(), new_heading.cos()], -1)[:, :, None].expand(-1, -1, win, -1)
        msg = msg + dyn.send_push(torch.cat([heading, where], -1)) * pushed.to(msg.dtype)[..., None, None]
    msg = msg * inside[..., None]
    flat = (cells[..., 0].clamp(0, s_ - 1) * s_ + cells[..., 1].clamp(0, s_ - 1)).reshape(bsz, -1)
    d = scene.shape[-1]
    write, write_pick = None, dyn.write_pick
    if dyn.write_push is not None or write_pick is not None:
        tokens = gather_cells(scene, cells[..., 0].reshape(bsz, -1), cells[..., 1].reshape(bsz, -1))
        tokens = tokens.reshape(bsz, n, win, d)
        change = torch.zeros_like(tokens)
        if dyn.write_push is not None:
            pushed_ = pushed.to(msg.dtype)[..., None, None]
            change = change + dyn.write_push(_push_inputs(dyn, tokens, heading, new_heading, where, frac)) * pushed_
        if write_pick is not None and picked is not None:
            change = change + write_pick(torch.cat([tokens, where], -1)) * picked.to(msg.dtype)[..., None, None]
        change = change * inside[..., None]
        write = torch.zeros(bsz, s_ * s_, d, device=scene.device, dtype=change.dtype)
        write = write.scatter_add(1, flat[..., None].expand(-1, -1, d), change.reshape(bsz, n * win, d))
        write = write.reshape(scene.shape).to(scene.dtype)
    m = msg.shape[-1]
    grid = torch.zeros(bsz, s_ * s_, m, device=scene.device, dtype=msg.dtype)
    grid = grid.scatter_add(1, flat[..., None].expand(-1, -1, m), msg.reshape(bsz, -1, m))
    touched = torch.zeros(bsz, s_ * s_, device=scene.device, dtype=scene.dtype)
    touched = touched.scatter_add(1, flat, inside.reshape(bsz, -1).to(scene.dtype)).clamp(max=1)
    x = torch.cat([scene, grid.reshape(bsz, s_, s_, -1)], -1).permute(0, 3, 1, 2)
    delta = dyn.cell(x).permute(0, 2, 3, 1)
    # Updated cells snap back to the lattice, so an update smaller than half a lattice step changes nothing.
    new = scene + delta if write is None else scene + delta + write
    return torch.where(touched.reshape(bsz, s_, s_, 1) > 0, snap(new), scene)


def cell_loss(model, new_scene: torch.Tensor, cells, moved_weight: float = 10.0) -> torch.Tensor:
    """The (frozen) decoder heads' loss of the updated scenes ``(C * K, S, S, D)`` against the
    oracle's cells after each step: ``cells (C, 1 + K, 5, S, S)`` the ``heads.CELL_KEYS`` maps
    (wall, floor, goal, box, item), before the step then after each of the K actions. Every class
    counts, so a write that moves a box must leave the walls, floors and items it passes as they
    are; the cells a box left or entered, and those an item left, weigh ``moved_weight``."""
    cells = torch.as_tensor(cells, device=new_scene.device).long()
    before, after = cells[:, :1].expand_as(cells[:, 1:]).flatten(0, 1), cells[:, 1:].flatten(0, 1)
    maps = dict(zip(CELL_KEYS, after.unbind(1)))  # (C * K, S, S) each
    moved = (maps["box"] != before[:, CELL_KEYS.index("box")]) | (maps["item"] != before[:, CELL_KEYS.index("item")])
    w = 1.0 + moved_weight * moved.float()
    per_cell = model.heads.cell_losses(model.heads.logits(new_scene), maps)
    return (per_cell * w).sum() / w.sum()
