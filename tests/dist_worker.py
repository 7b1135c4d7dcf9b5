"""A torchrun worker for tests/test_distributed.py: DDP gradients (gloo, float64) against the single-process gradient of
the whole batch, with and without gradient accumulation. Usage: torchrun --nproc_per_node 2 dist_worker.py OUT_DIR"""
import copy, json, sys
from pathlib import Path

import torch
import torch.distributed as dist

from genie_long.diffusion import GenieSchedule, q_sample, eps_loss_sum
from genie_long.primitives import perturb_parameters_
from genie_long.reference import GenieDenoiser, reference_config
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from genie_long.distributed import DistributedModelWrapper, GradientAccumulator, shutdown_distributed


def fixed_batch(lengths=(24, 9, 17, 5), L=24, seed=0):
    "Noised inputs drawn once (the same on every rank), with unequal masks."
    g = torch.Generator().manual_seed(seed)
    mask = (torch.arange(L) < torch.tensor(lengths)[:, None]).double()
    x0 = torch.cumsum(torch.randn(len(lengths), L, 3, generator=g, dtype=torch.float64), 1) * 2
    t = torch.randint(0, 1000, (len(lengths),), generator=g)
    x_t, eps = q_sample(GenieSchedule(), x0, t, mask, generator=g)
    return dict(x_t=x_t, t=t, eps=eps, mask=mask)


def take(b, idx): return {k: v[idx] for k, v in b.items()}


def one_step(model, micro_batches):
    "One token-normalised GradientAccumulator step with SGD: (loss, flat gradient, flat new weights)."
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    acc = GradientAccumulator(model, opt, len(micro_batches), "tokens")
    seen = {}
    step = opt.step
    def capture():
        seen['grad'] = torch.cat([p.grad.flatten() for p in model.parameters()])
        step()
    opt.step = capture
    fn = lambda b: eps_loss_sum(model(b['x_t'], b['t'], b['mask']), b['eps'], b['mask'])[0]
    out = acc.step(micro_batches, fn)
    return out['loss'], seen['grad'], torch.cat([p.detach().flatten() for p in model.parameters()])


def rel(a, b): return ((a - b).norm() / b.norm()).item()


def main(out_dir: Path):
    torch.manual_seed(0)
    config = reference_config("tiny", trunk=dict(n_layer=1), structure=dict(n_layer=1))
    base = perturb_parameters_(GenieDenoiser(config), 0.1, 0)
    base = base.double().eval()                      # eval: no dropout draws, so ranks and the reference agree
    big = fixed_batch()
    res = {}
    for k in (1, 2):   # k micro-batches per step; each rank takes its strided share of each micro-batch
        par = DistributedModelWrapper(copy.deepcopy(base), device='cpu')
        calls = []   # gradient all-reduces (one per bucket): no_sync must leave the inner micro-steps without any
        def hook(state, bucket):
            calls.append(1)
            return allreduce_hook(dist.group.WORLD, bucket)
        par.wrapped.register_comm_hook(None, hook)
        n = len(big['mask'])
        micro = [take(big, list(range(j * n // k, (j + 1) * n // k))[par.rank::par.world_size]) for j in range(k)]
        loss, grad, w = one_step(par.wrapped, micro)
        ref_loss, ref_grad, ref_w = one_step(copy.deepcopy(base), [big])     # one process, the whole batch
        gathered = [torch.empty_like(grad) for _ in range(par.world_size)]
        dist.all_gather(gathered, grad)
        w0 = torch.cat([p.detach().flatten() for p in base.parameters()])
        res[f'k{k}'] = dict(rank=par.rank, world_size=par.world_size, residues=[int(b['mask'].sum()) for b in micro],
                            loss=loss, ref_loss=ref_loss, grad_vs_single=rel(grad, ref_grad),
                            update_vs_single=rel(w - w0, ref_w - w0),
                            grad_between_ranks=max(rel(g, gathered[0]) for g in gathered), allreduce_calls=len(calls))
    # the loss curve: three Adam steps on fresh batches, 2 ranks × their shares against one process × the whole batch
    par, ref = DistributedModelWrapper(copy.deepcopy(base), device='cpu'), copy.deepcopy(base)
    accs = [GradientAccumulator(m, torch.optim.Adam(m.parameters(), 1e-3), 1, "tokens") for m in (par.wrapped, ref)]
    curves = ([], [])
    for s in range(3):
        b = fixed_batch(seed=10 + s)
        share = take(b, list(range(len(b['mask'])))[par.rank::par.world_size])
        for m, acc, batch, curve in zip((par.wrapped, ref), accs, (share, b), curves):
            def loss_fn(x, m=m): return eps_loss_sum(m(x['x_t'], x['t'], x['mask']), x['eps'], x['mask'])[0]
            curve.append(acc.step([batch], loss_fn)['loss'])
    res['curve'], res['ref_curve'] = curves
    (out_dir / f'rank{dist.get_rank()}.json').write_text(json.dumps(res))
    shutdown_distributed(0)                          # barrier → destroy_process_group → flush → os._exit(0)


if __name__ == '__main__':
    main(Path(sys.argv[1]))
