"""The benchmark on Doom: the learned world model against the game's own frames and geometry.

Held-out episodes (probe seeds of the ``vizdoom`` block) are played in the real game with a
seeded random policy from the first frames after the spawn's teleport fog has cleared (as
``backend="model"`` starts), keeping each player's frames, the game's depth buffer, poses and eye
heights. Every variant starts from the episode's first frames and poses and is fed the played
actions:

- ``shared``: the world model (``checkpoints/vizdoom``), one shared state for all players;
- ``stacked``: the stacked-frames baseline trained on the same data (no state);
- ``persistence``: every player's first frame, repeated (a bound: nothing moves);
- ``mean``: the training data's mean frame (the stacked checkpoint's ``mean_frame``).

**Fidelity**: PSNR of every player's view against the game's at steps 1, 10 and 100.
**Cross-view consistency** needs no oracle renderer: at every ``every``-th step, pixel pairs of
two players that see the same world point are found from the game's depth buffers and poses
(:func:`multiworld.bench.depth_correspondence.find_depth_matches`); a variant's contrast is
``1 - D / D_shuffled``, its mean colour difference over those pairs against pairs with the
o-side shuffled within the same image row (the arena's definition). ``game`` is the game's own
frames (the ceiling). Intervals: 95% bootstrap over episodes, paired differences against
``shared``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import torch
from tqdm import tqdm

from multiworld.bench import stats
from multiworld.bench.correspondence import pair_differences
from multiworld.bench.depth_correspondence import find_depth_matches
from multiworld.bench.provenance import commit, stamp
from multiworld.seeds import probe_seeds

FIDELITY_STEPS = (1, 10, 100)
# The game as the shipped checkpoints' data was recorded (README, model card): 4 players on
# cig_map01, 4 tics per step, a 16 x 16 grid over the map, 64 x 64 views.
DOOM_ENV = {"num_agents": 4, "map": "cig_map01", "frame_skip": 4, "grid_size": 16}
VARIANTS = ("shared", "stacked", "persistence", "mean")


@dataclasses.dataclass
class DoomEpisode:
    seed: int
    frames: np.ndarray  # (T+1, N, H, W, 3) uint8
    depth: np.ndarray  # (T+1, N, H, W) float32 view-axis depth, cells
    poses: np.ndarray  # (T+1, N, 3) float32
    eye_z: np.ndarray  # (T+1, N) float32 eye heights, cells
    actions: np.ndarray  # (T, N) int64


def play_episodes(env_kwargs: dict, seeds: list[int], steps: int, progress: bool = True):
    """The held-out episodes, played in the game; returns (episodes, the game's world metadata)."""
    from multiworld.games.vizdoom import parallel_env

    env = parallel_env(**{**env_kwargs, "obs_type": "rgbd", "max_cycles": steps})
    episodes = []
    try:
        meta = env.world_metadata()
        bar = tqdm(total=len(seeds) * steps, desc="doom episodes", unit="step", disable=not progress)
        agents = list(env.possible_agents)
        for seed in seeds:
            obs, infos = env.reset(seed=seed)  # the first frames after the spawn fog (as backend="model")
            rng = np.random.default_rng(seed)
            seen, acts = [_look(env, agents, obs, infos)], []
            for _ in range(steps):
                act = {a: int(rng.integers(env.action_space(a).n)) for a in agents}
                obs, _, _, _, infos = env.step(act)
                acts.append([act[a] for a in agents])
                seen.append(_look(env, agents, obs, infos))
                bar.update()
            frames, depth, poses, eyes = (np.stack(x) for x in zip(*seen))
            episodes.append(DoomEpisode(seed, frames, depth, poses, eyes, np.array(acts, np.int64)))
        bar.close()
    finally:
        env.close()
    return episodes, meta


def _look(env, agents, obs, infos):
    """One step of every player: frames, depth (cells), poses, eye heights."""
    eyes = np.array([infos[a]["eye_z"] for a in agents], np.float32)
    return np.stack([obs[a][..., :3] for a in agents]), env.depth(), env.poses(), eyes


@torch.no_grad()
def roll_shared(model, ep: DoomEpisode, world: str, grid: int) -> np.ndarray:
    """(T+1, N, H, W, 3) uint8: the world model's views, encoded from the first frames and poses."""
    dev = model.device
    scen = torch.tensor([model.cfg.worlds.index(world)], device=dev)
    views = torch.as_tensor(ep.frames[0], device=dev)[None]
    latent = model.encode(views, torch.as_tensor(ep.poses[0], device=dev)[None], grid)
    out = [model.render(latent)[0][0]]
    for t in range(len(ep.actions)):
        latent, _ = model.step(latent, torch.as_tensor(ep.actions[t], device=dev)[None], scen)
        out.append(model.render(latent)[0][0])
    return (torch.stack(out).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


@torch.no_grad()
def roll_stacked(model, ep: DoomEpisode, world: str) -> np.ndarray:
    """(T+1, N, H, W, 3) uint8: the stacked-frames baseline's views from the first frames."""
    dev = model.device
    scen = torch.tensor([model.cfg.worlds.index(world)], device=dev)
    views = torch.as_tensor(ep.frames[0], device=dev)[None].float() / 255
    ctx = model.first_context(views, model.cfg.context)
    pose = torch.as_tensor(ep.poses[0], device=dev)[None]
    out = [views[0]]
    for t in range(len(ep.actions)):
        frames, pose, _ = model.step(ctx, pose, torch.as_tensor(ep.actions[t], device=dev)[None], scen)
        ctx = torch.cat([ctx[:, :, 1:], frames.clamp(0, 1)[:, :, None]], 2)
        out.append(frames.clamp(0, 1)[0].permute(0, 2, 3, 1))
    return (torch.stack(out) * 255).round().to(torch.uint8).cpu().numpy()


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a.astype(np.float32) - b.astype(np.float32)) ** 2).mean())


def measure(episodes: list[DoomEpisode], views: dict[str, list[np.ndarray]], meta: dict, every: int, seed: int = 0):
    """Per episode: every variant's MSE at the fidelity steps and its summed pair differences over
    the game's matches (and over the shuffled pairs); the game's own frames as ``game``."""
    cam = meta["camera"]
    far = 255 * float(meta["depth_scale"]) * 0.999  # a saturated depth buffer matches nothing
    names = ["game", *views]
    steps = [t for t in FIDELITY_STEPS if t < len(episodes[0].frames)]
    mse = {v: np.zeros((len(episodes), len(steps))) for v in views}
    same = {v: np.zeros(len(episodes)) for v in names}
    shuf = {v: np.zeros(len(episodes)) for v in names}
    matches = np.zeros(len(episodes), np.int64)
    rng = np.random.default_rng(seed)
    for e, ep in enumerate(episodes):
        for v in views:
            mse[v][e] = [_mse(views[v][e][t], ep.frames[t]) for t in steps]
        for t in range(every, len(ep.frames), every):
            m = find_depth_matches(
                ep.depth[t], ep.poses[t], cam, eye_z=ep.eye_z[t], abs_tolerance=float(meta["depth_scale"]), far=far
            )
            if not len(m):
                continue
            s = m.shuffled(rng)
            matches[e] += len(m)
            for v in names:
                rgb = (ep.frames[t] if v == "game" else views[v][e][t])[None]
                same[v][e] += pair_differences(rgb, m).sum()
                shuf[v][e] += pair_differences(rgb, s).sum()
    return steps, mse, same, shuf, matches


def summarize(steps, mse, same, shuf, matches) -> dict:
    n = len(matches)
    out = {"episodes": n, "matches": int(matches.sum()), "fidelity": {}, "contrast": {}}
    for i, t in enumerate(steps):
        fid = {v: stats.psnr_of_mean(m[:, i]) for v, m in mse.items()}
        ci = stats.compare(fid, n)
        out["fidelity"][str(t)] = {
            "psnr": {v: round(f(np.arange(n)), 2) for v, f in fid.items()},
            "ci": ci["ci"],
            "vs_shared": ci["diff"],
        }

    def contrast(v):
        ratio = stats.ratio_of_sums(same[v], shuf[v])
        return lambda i: 1.0 - ratio(i)

    con = {v: contrast(v) for v in same}
    ci = stats.compare(con, n)
    out["contrast"] = {
        "value": {v: round(f(np.arange(n)), 4) for v, f in con.items()},
        "ci": ci["ci"],
        "vs_shared": ci["diff"],
    }
    return out


def strip(episode: DoomEpisode, views: dict[str, np.ndarray], steps=(0, 1, 10, 50, 100), agent: int = 0) -> np.ndarray:
    """Rows game, then each variant; columns ``steps``: one player's views side by side (2x)."""
    steps = [t for t in steps if t < len(episode.frames)]
    rows = [episode.frames, *views.values()]
    gap = 2
    h, w = episode.frames.shape[2:4]
    img = np.full((len(rows) * (2 * h + gap), len(steps) * (2 * w + gap), 3), 255, np.uint8)
    for r, seq in enumerate(rows):
        for c, t in enumerate(steps):
            tile = seq[t][agent].repeat(2, 0).repeat(2, 1)
            y, x = r * (2 * h + gap), c * (2 * w + gap)
            img[y : y + 2 * h, x : x + 2 * w] = tile
    return img


def markdown(res: dict, info: dict, commit_id: str = "unknown") -> str:
    lines = [
        "# vizdoom/model",
        "",
        f"commit `{commit_id}`",
        "",
        f"{res['episodes']} held-out episodes of {info['steps']} steps, {info['env']['num_agents']} players, "
        f"map {info['env']['map']}, random actions (probe seeds {info['seeds'][0]}..{info['seeds'][-1]}); "
        f"{res['matches']} matched pixel pairs from the game's depth. 95% bootstrap intervals over episodes.",
        "",
        "| view PSNR (dB) | " + " | ".join(res["fidelity"]) + " |",
        "|---|" + "---|" * len(res["fidelity"]),
    ]
    for v in VARIANTS:
        cells = []
        for f in res["fidelity"].values():
            if v not in f["psnr"]:
                continue
            lo, hi = f["ci"][v]
            cells.append(f"{f['psnr'][v]:.2f} [{lo:.2f}, {hi:.2f}]")
        if cells:
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
    lines += ["", "| cross-view consistency contrast | value | 95% interval | shared minus it |", "|---|---|---|---|"]
    con = res["contrast"]
    for v in ["game", *VARIANTS]:
        if v not in con["value"]:
            continue
        lo, hi = con["ci"][v]
        d = con["vs_shared"].get(v)
        diff = "" if d is None else f"[{d['ci'][0]}, {d['ci'][1]}] ({d['call']})"
        lines.append(f"| {v} | {con['value'][v]:.4f} | [{lo}, {hi}] | {diff} |")
    lines += ["", f"Shared vs others at each step: {_calls(res)}", ""]
    return "\n".join(lines)


def _calls(res: dict) -> str:
    parts = []
    for t, f in res["fidelity"].items():
        parts.append(f"step {t}: " + ", ".join(f"{v} {d['call']}" for v, d in f["vs_shared"].items()))
    return "; ".join(parts)


def run(
    checkpoint: str | pathlib.Path | None,
    stacked_checkpoint: str | pathlib.Path | None,
    env_kwargs: dict,
    episodes: int,
    steps: int,
    out: str | pathlib.Path,
    every: int = 5,
    progress: bool = True,
) -> dict:
    """Play, roll every variant, measure, and write ``out/model.{json,md}`` and ``out/strip.png``."""
    from multiworld.games.doom_model import CHECKPOINT
    from multiworld.models.checkpoint import load_checkpoint
    from multiworld.models.recorded import CAMERA_FIELDS
    from multiworld.viewer.png import encode_png

    out = pathlib.Path(out)
    shared = load_checkpoint(checkpoint or CHECKPOINT)
    stacked = load_checkpoint(stacked_checkpoint or CHECKPOINT.parent / "vizdoom_stacked")
    seeds = probe_seeds("vizdoom", episodes)
    eps, meta = play_episodes(env_kwargs, seeds, steps, progress)
    world, grid = meta["world"], int(meta["grid_size"])
    for name, m in (("shared", shared), ("stacked", stacked)):
        cam = m.cfg.camera if name == "shared" else None
        if cam is not None and any(not np.isclose(cam[k], meta["camera"][k], rtol=1e-4) for k in CAMERA_FIELDS):
            raise ValueError(f"the {name} checkpoint was trained with another camera or grid than {env_kwargs}")
        if world not in m.cfg.worlds:
            raise ValueError(f"the {name} checkpoint was trained on {list(m.cfg.worlds)}, not on {world!r}")
    mean = (stacked.mean_frame.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    views: dict[str, list[np.ndarray]] = {v: [] for v in VARIANTS}
    for ep in tqdm(eps, desc="doom rollouts", unit="episode", disable=not progress):
        views["shared"].append(roll_shared(shared, ep, world, grid))
        views["stacked"].append(roll_stacked(stacked, ep, world))
        views["persistence"].append(np.repeat(ep.frames[:1], len(ep.frames), 0))
        views["mean"].append(np.broadcast_to(mean, ep.frames.shape))
    res = summarize(*measure(eps, views, meta, every))
    info = {"env": env_kwargs, "steps": steps, "seeds": seeds, "every": every, "world_metadata": meta}
    stacked_dir = stacked_checkpoint or CHECKPOINT.parent / "vizdoom_stacked"
    prov = stamp({"shared": checkpoint or CHECKPOINT, "stacked": stacked_dir})
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.json").write_text(json.dumps({"info": info, "results": res, "provenance": prov}, indent=2) + "\n")
    (out / "model.md").write_text(markdown(res, info, commit()))
    shown = {v: views[v][0] for v in ("shared", "stacked")}
    (out / "strip.png").write_bytes(encode_png(strip(eps[0], shown)))
    return res
