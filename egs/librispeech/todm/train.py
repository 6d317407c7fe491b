#!/usr/bin/env python3
"""Train a TODM supernet (stage 3), or one fixed architecture alone (stage 5 baselines).

    # supernet: sandwich rule + in-place alpha-divergence KD + adaptive dropout + ScaledAdam
    python -m todm.train --exp-dir exp/supernet --bpe-model data/lang_bpe_64/bpe.model
    # individually trained baseline of one subnet architecture, same recipe
    python -m todm.train --exp-dir exp/baseline-L4-F288-H2 --subnet L4-F288-H2 ...
    # multi-process (gloo on CPU, nccl on GPU); multi-node through torchrun's own flags
    torchrun --nproc-per-node 4 -m todm.train ...

Ablations: --kd false, --adaptive-dropout false, --optimizer adam, --num-random-subnets N.
Resume: --start-epoch N / --start-batch B as in icefall, or --auto-resume true (newest
checkpoint in --exp-dir; what run.sh uses, so a killed stage 3 continues where it stopped).
"""

import argparse
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import sentencepiece as spm
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from todm.adaptive_dropout import DropoutRule
from todm.asr_datamodule import AsrDataModule, CutFilter, batch_to_tensors
from todm.checkpoint import (find_resume_checkpoint, load_checkpoint, remove_checkpoints, save_checkpoint,
                             update_averaged_model)
from todm.cost import count_parameters
from todm.dist import (DistInfo, all_reduce_gradients, all_reduce_sum, broadcast_parameters, cleanup_dist,
                       parameter_digest, setup_dist)
from todm.loss_backend import LOSS_BACKENDS, get_loss_backend
from todm.model import Transducer, build_model
from todm.model_config import add_model_arguments, config_from_args
from todm.optimizer_setup import make_optimizer
from todm.sandwich import SandwichConfig, random_subnet_pool, sample_sandwich, sandwich_step
from todm.subnet import SearchSpace, SubnetSpec
from todm.training_setup import add_training_arguments, cpu_threads, sandwich_config_from_args
from todm.transducer_loss import transducer_forward
from todm.utils import WriteError, fix_random_seed, save_json, setup_logger


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_arguments(parser, LOSS_BACKENDS)
    add_model_arguments(parser)
    AsrDataModule.add_arguments(parser)
    return parser


def training_model(args: argparse.Namespace, vocab_size: int) -> Transducer:
    """The model the flags describe: the supernet, or --subnet's architecture alone (a baseline,
    same recipe). todm.describe_model prints it without training."""
    model = build_model(config_from_args(args, vocab_size=vocab_size, blank_id=0))
    if not args.subnet:
        return model
    spec = SubnetSpec.parse(args.subnet)
    model.config.search_space.validate(spec)
    return model.extract(spec)


@torch.no_grad()
def validate(model, loss_api, dl, sp, device, cfg: SandwichConfig, specs: dict[str, SubnetSpec]) -> dict[str, float]:
    """Per-frame pruned-loss of the given subnets on the dev set (eval mode, no dropout)."""
    model.eval()
    totals = {name: [0.0, 0] for name in specs}
    for batch in dl:
        x, x_lens, y = batch_to_tensors(batch, sp, device)
        for name, spec in specs.items():
            out = transducer_forward(model, loss_api, x, x_lens, y, spec, dropout=0.0,
                                     prune_range=cfg.prune_range, am_scale=cfg.am_scale, lm_scale=cfg.lm_scale)
            totals[name][0] += (cfg.simple_loss_scale * out.simple_loss + out.pruned_loss).item()
            totals[name][1] += out.num_frames
    model.train()
    return {name: tot / max(frames, 1) for name, (tot, frames) in totals.items()}


def main() -> None:
    args = get_parser().parse_args()
    info = setup_dist()
    device = torch.device("cuda", info.local_rank) if torch.cuda.is_available() and args.device != "cpu" \
        else torch.device("cpu")
    exp_dir: Path = args.exp_dir
    setup_logger(exp_dir / "log" / "log-train", info.rank, info.world_size)
    if device.type == "cpu":
        threads, why = cpu_threads(args.num_threads, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        torch.set_num_threads(threads)
        logging.info(f"{threads} torch thread(s) per process ({why}); OMP_WAIT_POLICY="
                     f"{os.environ.get('OMP_WAIT_POLICY', 'unset (active: slow when another process holds a core)')}")
    fix_random_seed(args.seed)

    sp = spm.SentencePieceProcessor(model_file=str(args.bpe_model))
    if sp.piece_to_id("<blk>") != 0:
        raise ValueError(f"{args.bpe_model}: <blk> must have id 0 (train it with local/train_bpe.py)")
    model = training_model(args, vocab_size=sp.get_piece_size())
    config = model.config
    space = config.search_space
    num_params = {s: count_parameters(config, s) for s in space.enumerate()}
    model.to(device)
    loss_api = get_loss_backend(args.loss_backend)
    cfg = sandwich_config_from_args(args)
    pool = random_subnet_pool(space, cfg.random_subnets)
    if pool:
        logging.info(f"random subnets drawn from {', '.join(map(str, pool))}")
    dropout_rule = DropoutRule(config.dropout, args.dropout_gamma, args.adaptive_dropout)
    optimizer, scheduler = make_optimizer(model, args)
    scaler = torch.amp.GradScaler(device.type, enabled=args.use_fp16, init_scale=1.0)
    autocast_dtype = torch.float16 if args.use_fp16 else torch.bfloat16 if args.use_bf16 else None
    model_avg = build_model(config).to(torch.float64) if info.is_main else None
    subnet_rng = random.Random(args.seed)

    state: dict[str, Any] = dict(batch_idx_train=0, cur_epoch=0, batches_in_epoch=0, wall_seconds=0.0,
                                 process_seconds=0.0, skipped_batches=0)
    resume = _resume_path(args)
    if resume is not None:
        ckpt = load_checkpoint(resume, model, model_avg, optimizer, scheduler, scaler, restore_rng=True)
        state.update({k: ckpt["params"][k] for k in state})
        subnet_rng.setstate(_tuple_state(ckpt["params"]["subnet_rng"]))
        logging.info(f"resumed from {resume}: epoch {state['cur_epoch'] + 1}, batch {state['batch_idx_train']}")
    elif model_avg is not None:
        model_avg.load_state_dict(model.state_dict())
    if state["cur_epoch"] >= args.num_epochs:
        logging.info(f"{exp_dir} is already trained for {state['cur_epoch']} epochs (--num-epochs "
                     f"{args.num_epochs}): nothing to do")
        cleanup_dist(info)
        return
    broadcast_parameters(model, info)

    logging.info(f"search space {space}; largest {space.largest()} {num_params[space.largest()]:,} params, "
                 f"smallest {space.smallest()} {num_params[space.smallest()]:,} params; device {device}; "
                 f"world size {info.world_size}")
    data = AsrDataModule(args)
    train_cuts = data.cuts(args.train_part)
    cut_filter = CutFilter(sp, args.min_utt_duration, args.max_utt_duration)
    train_cuts = train_cuts.filter(cut_filter)
    valid_dl = data.eval_dataloader(data.cuts(args.valid_part).filter(CutFilter(sp, 0.0, 1e9)))
    tb = SummaryWriter(log_dir=str(exp_dir / "tensorboard")) if info.is_main and args.tensorboard else None
    valid_specs = {"largest": space.largest()}
    if space.smallest() != space.largest():  # a baseline has one architecture: validated once
        valid_specs["smallest"] = space.smallest()

    def params_for_save() -> dict[str, Any]:
        flags = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        return {**flags, **state, "model_config": config.to_dict(),
                "subnet_rng": subnet_rng.getstate(), "world_size": info.world_size}

    def save(path: Path) -> None:
        if not info.is_main:
            return
        try:
            save_checkpoint(path, model, params_for_save(), model_avg, optimizer, scheduler, None, scaler)
        except WriteError as e:
            raise SystemExit(f"todm.train: {e}. Make room (or fix the permissions of {exp_dir}) and rerun: "
                             f"--auto-resume continues from the newest checkpoint there.") from e

    start_time, start_cpu = time.time(), time.process_time()
    for epoch in range(state["cur_epoch"] + 1, args.num_epochs + 1):
        scheduler.step_epoch(epoch - 1)
        skip = state["batches_in_epoch"]
        if skip == 0:
            fix_random_seed(args.seed + epoch - 1)
        train_dl = data.train_dataloader(train_cuts, epoch=epoch - 1, seed=args.seed, skip_batches=skip)
        model.train()
        bar = tqdm(train_dl, desc=f"epoch {epoch}", disable=not info.is_main, initial=skip, unit="batch")
        for batch in bar:
            x, x_lens, y = batch_to_tensors(batch, sp, device)
            state["batch_idx_train"] += 1
            state["batches_in_epoch"] += 1
            b = state["batch_idx_train"]
            scheduler.step_batch(b)
            subnets = sample_sandwich(space, subnet_rng, cfg.num_random_subnets, pool)
            res = sandwich_step(model, loss_api, (x, x_lens, y), subnets, cfg, dropout_rule, num_params,
                                b, scaler if args.use_fp16 else None, autocast_dtype)
            if all_reduce_sum(0.0 if res.finite else 1.0, info, device) > 0:
                state["skipped_batches"] += 1
                optimizer.zero_grad(set_to_none=True)
                logging.warning(f"batch {b}: non-finite loss ({res.bad_subnet or 'another rank'}); skipped, "
                                f"{state['skipped_batches']} so far; cuts {[c.id for c in batch['supervisions']['cut']][:5]}")
                continue
            all_reduce_gradients(model, info)
            log_now = b % args.log_interval == 0 or b == 1
            grad_norm = _grad_norm(model) if log_now else 0.0
            if args.use_fp16:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if model_avg is not None and b % args.average_period == 0:
                update_averaged_model(model_avg, model, args.average_period, b)

            frames = max(res.num_frames, 1)
            utt_per_s = len(y) * info.world_size / max(sum(res.seconds.values()), 1e-9)
            bar.set_postfix(loss=f"{res.losses['largest']['loss'] / frames:.3f}", utt_s=f"{utt_per_s:.1f}")
            if log_now:
                _log_step(tb, b, epoch, res, frames, scheduler.get_last_lr()[0], len(y), grad_norm)
            if args.valid_interval > 0 and b % args.valid_interval == 0:
                _log_valid(tb, b, validate(model, loss_api, valid_dl, sp, device, cfg, valid_specs))
            if args.save_every_n > 0 and b % args.save_every_n == 0:
                _add_cost(state, start_time, start_cpu, info, device)
                start_time, start_cpu = time.time(), time.process_time()
                save(exp_dir / f"checkpoint-{b}.pt")
                if info.is_main:
                    remove_checkpoints(exp_dir, args.keep_last_k)
            if args.max_batches and b >= args.max_batches:
                break
        logging.info(f"epoch {epoch} done; filtered cuts: {cut_filter.report()}; skipped batches: "
                     f"{state['skipped_batches']}")
        _log_valid(tb, state["batch_idx_train"], validate(model, loss_api, valid_dl, sp, device, cfg, valid_specs))
        state["cur_epoch"], state["batches_in_epoch"] = epoch, 0
        _add_cost(state, start_time, start_cpu, info, device)
        start_time, start_cpu = time.time(), time.process_time()
        save(exp_dir / f"epoch-{epoch}.pt")
        if args.max_batches and state["batch_idx_train"] >= args.max_batches:
            break

    if info.is_main:
        save_json(training_cost(state, info.world_size, device, num_params, space), exp_dir / "train_cost.json")
        if tb is not None:
            tb.close()
    logging.info(f"done: {state['batch_idx_train']} batches, {state['wall_seconds']:.1f} s wall, "
                 f"parameter sha1 {parameter_digest(model)}")
    cleanup_dist(info)


def _resume_path(args) -> Path | None:
    if args.start_batch > 0:
        return args.exp_dir / f"checkpoint-{args.start_batch}.pt"
    if args.start_epoch > 1:
        return args.exp_dir / f"epoch-{args.start_epoch - 1}.pt"
    return find_resume_checkpoint(args.exp_dir) if args.auto_resume else None


def _tuple_state(state):
    """random.Random state saved as nested lists (weights_only) back to tuples."""
    return tuple(_tuple_state(s) for s in state) if isinstance(state, (list, tuple)) else state


def _add_cost(state: dict, start_time: float, start_cpu: float, info: DistInfo, device) -> None:
    state["wall_seconds"] += time.time() - start_time
    state["process_seconds"] += all_reduce_sum(time.process_time() - start_cpu, info, device)


def training_cost(state: dict[str, Any], world_size: int, device: torch.device,
                  num_params: dict[SubnetSpec, int], space: SearchSpace) -> dict[str, Any]:
    """train_cost.json, what stage 6 compares: TODM's one job against the sum of the baselines."""
    return {
        "wall_seconds": round(state["wall_seconds"], 2),
        "process_seconds": round(state["process_seconds"], 2),
        "device_seconds": round(state["wall_seconds"] * world_size, 2),
        "world_size": world_size,
        "device": device.type,
        "batches": state["batch_idx_train"],
        "epochs": state["cur_epoch"],
        "skipped_batches": state["skipped_batches"],
        "search_space": str(space),
        "largest_params": num_params[space.largest()],
    }


def _grad_norm(model) -> float:
    norms = [p.grad.detach().float().norm() for p in model.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


def _log_step(tb, b: int, epoch: int, res, frames: int, lr: float, num_utts: int, grad_norm: float) -> None:
    parts = []
    for kind, losses in res.losses.items():
        parts.append(f"{kind}[" + ", ".join(f"{k}={v / frames:.4f}" for k, v in losses.items())
                     + f", p={res.dropout[kind]:.3f}, {res.seconds[kind]:.2f}s]")
    logging.info(f"epoch {epoch}, batch {b}, {num_utts} utts, lr {lr:.2e}, grad norm {grad_norm:.3g}: "
                 + " ".join(parts))
    if tb is None:
        return
    tb.add_scalar("train/learning_rate", lr, b)
    tb.add_scalar("train/grad_norm", grad_norm, b)
    tb.add_scalar("train/epoch", epoch, b)
    for kind, losses in res.losses.items():
        for k, v in losses.items():
            tb.add_scalar(f"train/{kind}_{k}", v / frames, b)
        tb.add_scalar(f"train/{kind}_dropout", res.dropout[kind], b)
        tb.add_scalar(f"train/{kind}_seconds", res.seconds[kind], b)


def _log_valid(tb, b: int, losses: dict[str, float]) -> None:
    logging.info("validation: " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items()))
    if tb is not None:
        for k, v in losses.items():
            tb.add_scalar(f"train/valid_{k}_loss", v, b)


if __name__ == "__main__":
    main()
