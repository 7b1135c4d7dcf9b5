"""Sequence parallelism with real processes (`torchrun --standalone`, gloo on CPU): the long denoiser with its residues
split across 2 and 3 ranks equals the single-process model — ε̂, loss and parameter gradients, float64, with padding."""
import json, os, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize('nproc', [2, 3])
def test_sequence_parallel_equals_single_process(tmp_path, nproc):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(nproc),
                        str(ROOT / 'tests' / 'sp_worker.py'), str(tmp_path)], capture_output=True, text=True, env=env,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 0 and 'terminate called' not in r.stderr, r.stderr[-3000:]
    for rank in range(nproc):
        res = json.loads((tmp_path / f'rank{rank}.json').read_text())
        assert res.pop('world') == nproc
        for case, d in res.items():
            assert abs(d['loss'] - d['ref_loss']) <= 1e-10 * abs(d['ref_loss']), (case, d)
            assert d['eps_rel_err'] < 1e-10 and d['grad_rel_err'] < 1e-10 and d['missing_grads'] == 0, (case, d)
