"""Training at every scale on the CPU: the device resolver, the worker-process data stream and
its resume, bf16, TensorBoard, validation on every set, DDP equal to one process, and the GPU
check's CPU path. (Ray Train with a killed worker: tests/test_ray_train.py.)"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib
import socket
import subprocess
import sys

import pytest
import torch

from multiworld.cli import main
from multiworld.models.device import resolve_device, training_precision
from multiworld.models.stream import BatchStream, batch_digest, make_loader
from multiworld.models.training import TrainSpec, build_job

ROOT = pathlib.Path(__file__).resolve().parent.parent
NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Two small arena stores: forage-v0 with 2 agents, push-v0 with 3."""
    root = tmp_path_factory.mktemp("data")
    paths = []
    for scenario, n in (("forage-v0", 2), ("push-v0", 3)):
        path = root / f"{scenario}-{n}.zarr"
        argv = ["data", "--episodes", "2", "--steps", "12", "--agents", str(n), "--scenario", scenario]
        assert main([*argv, "--out", str(path)]) == 0
        paths.append(str(path))
    return paths


def _spec(stores, out, **kw) -> TrainSpec:
    return TrainSpec(data=stores, out=str(out), preset="tiny", device="cpu", threads=1, progress=False, **kw)


# -- devices ---------------------------------------------------------------------------------------


def test_the_device_resolver_fails_loudly_and_names_the_fix():
    assert resolve_device("auto").type == ("cpu" if NO_CUDA else "cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    if NO_CUDA:
        for name in ("cuda", "cuda:1"):
            with pytest.raises(ValueError, match=r"CUDA is not available .* --device cpu"):
                resolve_device(name)
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    assert training_precision(torch.device("cpu")) == "fp32"  # CPU training stays fp32 unless asked
    assert training_precision(torch.device("cpu"), "bf16") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        training_precision(torch.device("cpu"), "fp16")


@pytest.mark.skipif(not NO_CUDA, reason="checks the error on a machine without CUDA")
def test_train_on_a_missing_gpu_is_a_one_line_error_before_any_work(stores, tmp_path, capsys):
    argv = ["train", "--preset", "tiny", "--data", stores[0], "--out", str(tmp_path / "run"), "--device", "cuda"]
    assert main(argv) == 2
    assert "CUDA is not available" in capsys.readouterr().err and not (tmp_path / "run").exists()


# -- the data stream -------------------------------------------------------------------------------


def _digests(stream: BatchStream, workers: int, count: int) -> list[str]:
    loader = iter(make_loader(stream, workers))
    out = [batch_digest(next(loader).batch) for _ in range(count)]
    del loader  # stops the workers
    return out


def test_the_stream_is_a_function_of_seed_shard_and_position(stores, tmp_path):
    job = build_job(_spec(stores, tmp_path))
    in_process = _digests(job.stream, 0, 5)
    assert len(set(in_process)) == 5
    assert _digests(job.stream, 2, 5) == in_process  # two worker processes: the same batches, in order
    again = build_job(_spec(stores, tmp_path))
    assert _digests(again.stream.from_position(2), 1, 3) == in_process[2:]  # a resumed stream
    shard = BatchStream(job.stream.sampler, job.stream.seed, shard=1)
    assert not set(_digests(shard, 0, 3)) & set(in_process)  # a data-parallel rank draws its own shard
    other = build_job(_spec(stores, tmp_path, seed=1))
    assert _digests(other.stream, 0, 2) != in_process[:2]


class _Interrupted(Exception):
    pass


class _Recording(torch.nn.Module):
    """The model, noting what every step saw: the batch and the torch RNG state."""

    def __init__(self, inner: torch.nn.Module, seen: list) -> None:
        super().__init__()
        self.inner, self.seen = inner, seen

    def forward(self, batch):
        self.seen.append((batch_digest(batch), batch_digest(torch.get_rng_state())))
        return self.inner(batch)


def _trainer(stores, out, workers: int, seen: list, interrupt_at: int | None = None):
    from multiworld.models.checkpoint import save_checkpoint
    from multiworld.models.trainer import Trainer

    torch.manual_seed(0)
    job = build_job(_spec(stores, out))
    cfg = dataclasses.replace(job.train, max_steps=6, minutes=1e6, save_every=3, log_every=2)

    def stop(trainer):
        if trainer.step == interrupt_at:
            raise _Interrupted

    model = _Recording(job.model, seen)
    save = lambda m, path, metrics: save_checkpoint(m.inner, path, metrics)  # noqa: E731
    return Trainer(model, job.stream, cfg, out, save, progress=False, workers=workers, tensorboard=False, on_step=stop)


def test_an_interrupted_run_resumes_on_the_same_sample_stream_and_weights(stores, tmp_path):
    from multiworld.models.checkpoint import load_checkpoint

    whole: list = []
    _trainer(stores, tmp_path / "whole", 0, whole).run()
    parts: list = []
    with pytest.raises(_Interrupted):
        _trainer(stores, tmp_path / "parts", 2, parts, interrupt_at=3).run()  # after the save at step 3
    resumed = _trainer(stores, tmp_path / "parts", 1, parts)
    assert resumed.load_state(lambda m, path: m.inner.load_state_dict(load_checkpoint(path).state_dict()))
    assert (resumed.step, resumed.position) == (3, 3)
    resumed.run()
    assert len(whole) == 6 and parts == whole  # every batch and the model's RNG state, step by step
    a, b = load_checkpoint(tmp_path / "whole" / "last"), load_checkpoint(tmp_path / "parts" / "last")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


# -- bf16, TensorBoard, validation -----------------------------------------------------------------


def test_bf16_run_records_its_precision_and_writes_tensorboard(stores, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    argv = ["train", "--preset", "tiny", "--data", *stores, "--out", str(run), "--max-steps", "10"]
    assert main([*argv, "--precision", "bf16", "--workers", "1", "--threads", "1", "--no-progress"]) == 0
    assert f"tensorboard --logdir {run / 'tensorboard'}" in capsys.readouterr().out
    training = json.loads((run / "config.json").read_text())["training"]
    assert (training["precision"], training["device"], training["workers"]) == ("bf16", "cpu", 1)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("loss/loss", "loss/pose", "loss/events", "loss/payout", "lr", "perf/samples_per_s"):
        assert tag in tags, (tag, sorted(tags))
    assert {"perf/data_wait_fraction", "eval/score", "eval/sets/push-v0_n3/loss"} <= tags
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[0]["samples_per_s"] > 0 and 0 <= log[0]["data_wait_fraction"] <= 1


def test_validation_covers_every_set_on_seeds_no_one_else_uses(stores, tmp_path):
    from multiworld import seeds
    from multiworld.models import validation

    job = build_job(_spec(stores, tmp_path))
    assert [v.name for v in job.validation] == ["forage-v0_n2", "push-v0_n3"]
    others = [b for b in seeds.BLOCKS if b is not seeds.VALIDATION]
    for v in job.validation:
        assert all(s in seeds.VALIDATION and not any(s in b for b in others) for s in v.seeds)
    assert not set(job.validation[0].seeds) & set(seeds.policy_evaluation_seeds(128))
    metrics = validation.evaluate(job.model.eval(), job.validation)
    assert set(metrics["sets"]) == {"forage-v0_n2", "push-v0_n3"}
    assert metrics["score"] == -metrics["loss"]
    for term in ("loss_pose", "loss_events", "loss_payout", "move_ok", "reward_err"):  # not the views alone
        assert term in metrics
    assert validation.evaluate(job.model, job.validation) == metrics  # fixed windows, fixed noise


# -- data parallel ---------------------------------------------------------------------------------


def test_ddp_step_on_two_ranks_equals_one_process_on_the_same_samples(tmp_path):
    from multiworld.models.checkpoint import load_checkpoint
    from tests.helpers import ddp

    ddp.one_step(0, 1, 0, str(tmp_path / "single"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(ddp.one_step, args=(2, port, str(tmp_path / "ddp")), nprocs=2, join=True)
    start = ddp.model().state_dict()
    single = load_checkpoint(tmp_path / "single" / "last").state_dict()
    data_parallel = load_checkpoint(tmp_path / "ddp" / "last").state_dict()
    moved = 0
    for name, w in single.items():
        assert (w - data_parallel[name]).abs().max() <= 1e-5, name
        moved += int(not torch.equal(w, start[name]))
    assert moved > 10  # the step changed the weights


# -- the GPU check ---------------------------------------------------------------------------------


def _gpu_check():
    path = ROOT / "benchmarks" / "gpu_check.py"
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location("gpu_check", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


@pytest.mark.skipif(not NO_CUDA, reason="checks the message on a machine without CUDA")
def test_gpu_check_says_there_is_no_cuda_and_exits_0():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "no CUDA device" in run.stdout


def test_gpu_check_measures_training_and_the_env_on_the_cpu(tmp_path):
    from tests.helpers.model import save_tiny_checkpoint

    check = _gpu_check()
    train = check.train_check("cpu", "tiny", steps=3, workers=1, precision="bf16", root=tmp_path, episodes=2)
    assert train["steps"] == 3 and train["precision"] == "bf16" and train["samples_per_s"] > 0
    env = check.env_check("cpu", worlds=2, agents=2, steps=2, checkpoint=save_tiny_checkpoint(tmp_path / "ck"))
    assert env["agent_frames_per_s"] > 0 and env["worlds"] == 2


def test_a_training_state_saved_before_the_data_stream_resumes(tmp_path):
    """``last/`` written by the trainer before ranks and stream positions (one ``rng.torch``, no
    ``data_position``) resumes: the position is the step, the RNG the saved one."""
    from safetensors.torch import load_file, save_file

    from multiworld.models.checkpoint import load_checkpoint
    from multiworld.models.trainer import TrainConfig, Trainer
    from tests.helpers import ddp

    ddp.one_step(0, 1, 0, str(tmp_path))
    last = tmp_path / "last"
    state = json.loads((last / "trainer.json").read_text())
    del state["data_position"], state["world_size"], state["precision"]
    (last / "trainer.json").write_text(json.dumps(state))
    tensors = {k: v for k, v in load_file(str(last / "optimizer.safetensors")).items() if not k[-1].isdigit()}
    assert "rng.torch" in tensors and "rng.torch.0" not in tensors
    save_file(tensors, str(last / "optimizer.safetensors"))
    trainer = Trainer(ddp.model(), BatchStream(ddp.Halves(), seed=0), TrainConfig(), tmp_path, None, tensorboard=False)
    torch.manual_seed(123)
    assert trainer.load_state(lambda m, path: m.load_state_dict(load_checkpoint(path).state_dict()))
    assert (trainer.step, trainer.position) == (1, 1) and torch.equal(torch.get_rng_state(), tensors["rng.torch"])
