"""Data parallelism with real processes: `torchrun --standalone --nproc_per_node 2` (gloo on CPU). DDP gradients against
the single-process gradient of the whole batch, and `genie-long train` under torchrun, resumed across process counts."""
import json, os, shutil, subprocess, sys
from pathlib import Path

import pytest
import torch
from genie_long.learner import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
EXE = shutil.which('genie-long') or pytest.fail('the genie-long script is not installed (pip install -e .)')
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'GENIE_LONG_DEBUG': ''}
TORCHRUN = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2']


def run(cmd, timeout=240):
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, env=ENV, timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, (cmd, r.returncode, r.stdout[-3000:], r.stderr[-3000:])
    assert 'terminate called' not in r.stderr, r.stderr[-3000:]
    return r


def test_ddp_gradients_equal_single_process(tmp_path):
    """2 ranks × unequal shares (41 and 14 residues): gradients equal on both ranks and to one process on the whole
    batch."""
    run([*TORCHRUN, ROOT / 'tests' / 'dist_worker.py', tmp_path])
    res = [json.loads((tmp_path / f'rank{r}.json').read_text()) for r in range(2)]
    for r in res:
        for k in ('k1', 'k2'):
            d = r[k]
            assert d['world_size'] == 2
            assert d['grad_vs_single'] < 1e-10 and d['update_vs_single'] < 1e-10, d
            assert d['grad_between_ranks'] == 0.0, d
            assert abs(d['loss'] - d['ref_loss']) < 1e-10 * abs(d['ref_loss']), d
        # no_sync: no all-reduce on the inner micro-step
        assert r['k1']['allreduce_calls'] == r['k2']['allreduce_calls'] > 0
    assert res[0]['k1']['residues'] != res[1]['k1']['residues']
    for r in res:   # data parallel on 2 ranks: the single-process loss curve with the doubled batch
        assert len(r['curve']) == 3 and all(abs(a - b) <= 1e-10 * abs(b) for a, b in zip(r['curve'], r['ref_curve'])), r
        assert r['curve'][0] != r['curve'][-1]


TRAIN = ['train', '--model', 'long', '--size', 'tiny', '--crop', '24', '--batch', '4', '--ckpt_every', '2',
         '--device', 'cpu']


def test_train_under_torchrun_and_resume_both_ways(tmp_path):
    out = tmp_path / 'dp'
    r = run([*TORCHRUN, '-m', 'genie_long.cli', *TRAIN, '--steps', 2, '--out', out])
    assert r.stdout.count('training long/tiny') == 1 and '2 processes' in r.stdout        # rank 0 alone prints
    assert sorted(p.name for p in out.iterdir()) == ['.lock', 'ckpt.pt', 'config.txt', 'loss.png', 'metrics.csv']
    rows = (out / 'metrics.csv').read_text().splitlines()
    assert len(rows) == 1 + 2 and rows[1].split(',')[6] == '4'                            # the global batch of 4
    ck = load_checkpoint(out / 'ckpt.pt')
    assert ck['step'] == 2 and not any(k.startswith('module.') for k in ck['model'])        # the plain model's weights
    # a distributed checkpoint resumes in one process …
    r = run([EXE, *TRAIN, '--steps', 3, '--out', out, '--resume'])
    assert load_checkpoint(out / 'ckpt.pt')['step'] == 3
    # … and a single-process one under torchrun, with gradient accumulation
    single = tmp_path / 'single'
    run([EXE, *TRAIN, '--steps', 1, '--out', single])
    run([*TORCHRUN, '-m', 'genie_long.cli', *TRAIN, '--steps', 2, '--accumulate', 2, '--out', single, '--resume'])
    ck = load_checkpoint(single / 'ckpt.pt')
    assert ck['step'] == 2 and ck['meta']['processes'] == 2 and ck['meta']['accumulate'] == 2
    assert [int(l.split(',')[0]) for l in (single / 'metrics.csv').read_text().splitlines()[1:]] == [1, 2]
