"""Sequence-parallel worker, launched by tests/test_sequence_parallel.py as
`torchrun --standalone --nproc_per_node P sp_worker.py OUT_DIR`: for each case, the long denoiser with its residues
split across the ranks against the same model in one process (float64, padded batch, dropout off): ε̂, the loss and
every parameter gradient. Writes rank<r>.json."""
import copy, json, os, sys, traceback
from pathlib import Path

import torch
import torch.distributed as dist

from genie_long.denoiser import LongSequenceDenoiser, MemoryPlan, long_config
from genie_long.diffusion import GenieSchedule, training_loss
from genie_long.distributed import SequenceTensorParallel
from genie_long.primitives import perturb_parameters_

CASES = {
    'plain': dict(L=21, kw=dict()),
    # every memory saving of a plan on: rank blocks, checkpointed layers, residue chunks, and IPA query chunks
    # (collectives are recomputed in backward, in the same order on every rank)
    'switches': dict(L=23, kw=dict(structure=dict(ipa_chunk=3)), plan=MemoryPlan.lean(rank_chunk=2, pair_chunk=4)),
    'sqdist': dict(L=17, kw=dict(pairs=dict(template='pooled+sqdist'), structure=dict(mhc=None))),
    # sparse k-NN edges: each rank selects its residues' neighbours among all residues
    'sparse': dict(L=22, kw=dict(pair_mode='sparse', sparse=dict(k=8, chunk=5))),
}


def check(name, L, kw, plan=None):
    torch.manual_seed(0)
    model = perturb_parameters_(LongSequenceDenoiser(long_config('tiny', **kw)).double(), 0.1, 0).eval()
    (plan or MemoryPlan()).apply(model)
    ref = copy.deepcopy(model)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, L, 3, generator=g, dtype=torch.float64).cumsum(1) * 2.0
    mask = torch.ones(2, L, dtype=torch.float64)
    mask[1, L - 6:] = 0                                            # the second chain is padded
    sched = GenieSchedule()
    ref_loss = training_loss(ref, sched, x0, mask, generator=torch.Generator().manual_seed(5))
    ref_loss.backward()
    sp = SequenceTensorParallel(model)
    loss = sp.training_loss(sched, x0, mask, generator=torch.Generator().manual_seed(5))
    loss.backward()
    sp.reduce_gradients()
    total = loss.detach().clone()
    dist.all_reduce(total)
    t = torch.tensor([3, 700])
    with torch.no_grad():
        eps_ref = ref(x0, t, mask)
        eps = sp.gather(sp(x0, t, mask), L)
    scale = max(q.grad.abs().max().item() for q in ref.parameters() if q.grad is not None)
    grad_err = max((p.grad - q.grad).abs().max().item() for p, q in zip(model.parameters(), ref.parameters())
                   if q.grad is not None) / scale
    return dict(loss=total.item(), ref_loss=ref_loss.item(), grad_rel_err=grad_err,
                eps_rel_err=((eps - eps_ref).abs().max() / eps_ref.abs().max()).item(),
                missing_grads=sum((p.grad is None) != (q.grad is None)
                                  for p, q in zip(model.parameters(), ref.parameters())))


if __name__ == '__main__':
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    dist.init_process_group('gloo')
    rank, code = dist.get_rank(), 0
    try:
        res = {name: check(name, **case) for name, case in CASES.items()}
        (out / f'rank{rank}.json').write_text(json.dumps(dict(world=dist.get_world_size(), **res)))
    except Exception:
        traceback.print_exc()
        code = 1
    # gloo can abort at interpreter exit after the work is done; end deliberately (SPEC 09)
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
