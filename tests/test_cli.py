"""End-to-end checks of the installed `genie-long` command, run as a user would: in a subprocess, on real files."""
import os, shutil, subprocess, sys
from pathlib import Path

import gemmi
import numpy as np
import pytest

from cli_helpers import ROOT, FIXTURES, EXE, run, assert_user_error

SHARED_CANDIDATES = (ROOT.parent / 'shared' / 'data' / 'structures', Path('/work/shared/data/structures'))
SHARED = next((p for p in SHARED_CANDIDATES if p.is_dir()), SHARED_CANDIDATES[0])


def test_help():
    r = run('--help')
    assert r.returncode == 0 and all(c in r.stdout for c in ('prepare', 'train', 'sample', 'demo'))
    for cmd in ('prepare', 'train', 'sample', 'demo'):
        r = run(cmd, '--help')
        assert r.returncode == 0 and 'usage: genie-long ' + cmd in r.stdout, r.stderr


def test_user_errors(tmp_path):
    assert_user_error(run('frobnicate'), 'frobnicate')
    assert_user_error(run('prepare', tmp_path / 'nowhere', '--out', tmp_path / 'x.npz'), 'nowhere')
    assert_user_error(run('sample', tmp_path / 'missing.pt'), 'missing.pt')
    assert_user_error(run('train', '--data', tmp_path / 'none.npz', '--out', tmp_path / 'r'), 'none.npz')
    assert_user_error(run('train', '--size', 'huge', '--out', tmp_path / 'r'), 'huge')
    assert_user_error(run('train', '--steps', '0', '--out', tmp_path / 'r'), '--steps')
    r = run('train', '--steps', 'many')  # argparse's own error: also status 2, no traceback
    assert r.returncode == 2 and 'Traceback' not in r.stderr


def test_prepare_train_resume_sample(tmp_path):
    data = tmp_path / 'fx.npz'
    r = run('prepare', FIXTURES, FIXTURES / 'README.md', '--out', data)
    assert r.returncode == 0, r.stderr
    assert 'read 16/16 structure files' in r.stdout and 'README.md: not a structure file' in r.stdout
    assert 'min_length 20' in r.stdout  # short NMR peptides are rejected with their reason
    run_dir = tmp_path / 'run'
    r = run('train', '--data', data, '--out', run_dir, '--steps', 4, '--batch', 2, '--crop', 24, '--ckpt_every', 2,
            '--device', 'cpu')
    assert r.returncode == 0, r.stderr
    assert (run_dir / 'ckpt.pt').exists() and (run_dir / 'loss.png').exists()
    assert len((run_dir / 'metrics.csv').read_text().splitlines()) == 1 + 4
    assert_user_error(run('train', '--data', data, '--out', run_dir, '--steps', 6), '--resume')
    r = run('train', '--data', data, '--out', run_dir, '--steps', 6, '--batch', 2, '--crop', 24, '--resume',
            '--device', 'cpu')
    assert r.returncode == 0, r.stderr
    assert len((run_dir / 'metrics.csv').read_text().splitlines()) == 1 + 6
    out = tmp_path / 'samples'
    r = run('sample', run_dir / 'ckpt.pt', '--lengths', 15, 25, '--count', 2, '--steps', 8, '--out', out,
            '--device', 'cpu')
    assert r.returncode == 0, r.stderr
    assert 'off-reference' in r.stdout and 'adjacent CA–CA' in r.stdout
    pdbs = sorted(out.glob('*.pdb'))
    assert [p.name for p in pdbs] == ['L0015_00.pdb', 'L0015_01.pdb', 'L0025_00.pdb', 'L0025_01.pdb']
    for p in pdbs:
        st = gemmi.read_structure(str(p))
        assert st[0].count_atom_sites() == int(p.name[1:5])
        xyz = np.array([res['CA'][0].pos.tolist() for res in st[0][0]])
        np.testing.assert_allclose(xyz, np.load(p.with_suffix('.npy')), atol=1e-3, rtol=1e-5)  # PDB's 8.3 columns
    assert (out / 'traces.png').stat().st_size > 0


def test_demo_short(tmp_path):
    "The demo path end to end, cut short: a few training steps on the bundled data, 1000-step sampling."
    r = run('demo', '--train', '--out', tmp_path / 'demo', '--steps', 6, '--count', 1, timeout=900)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'demo' / 'run' / 'loss.png').exists()
    assert len(list((tmp_path / 'demo' / 'samples').glob('*.pdb'))) == 1
    assert 'demo outputs in' in r.stdout and (tmp_path / 'demo' / 'evaluation' / 'evaluation.csv').exists()


@pytest.mark.skipif(not SHARED.is_dir(), reason='the shared structure set is not on this machine')
def test_prepare_whole_shared_set(tmp_path):
    "All 359 shared files: each read or rejected with a reason, no crash."
    r = run('prepare', SHARED, '--out', tmp_path / 'all.npz')
    assert r.returncode == 0, r.stderr
    assert 'read 359/359 structure files' in r.stdout, r.stdout[:500]


def test_long_model_train_sample(tmp_path):
    "The linear-memory denoiser through the same commands: train on the bundled data, resume, sample."
    run_dir = tmp_path / 'long'
    r = run('train', '--model', 'long', '--out', run_dir, '--steps', 2, '--batch', 2, '--crop', 32, '--device', 'cpu')
    assert r.returncode == 0, r.stderr
    assert 'training long/tiny' in r.stdout
    r = run('sample', run_dir / 'ckpt.pt', '--length', 40, '--count', 1, '--steps', 4, '--out', tmp_path / 's',
            '--device', 'cpu')
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 's' / 'L0040_00.pdb').exists()
    r = run('sample', run_dir / 'ckpt.pt', '--lengths', 300000, '--count', 1, '--memory_gb', 1,
            '--out', tmp_path / 's2')
    assert_user_error(r, 'longest chain that fits')           # refused before any work, with the length that would fit


def test_sparse_shared_train_sample(tmp_path):
    "Long-model options: the sparse model with one structure layer shared by all depths trains, resumes and samples."
    run_dir = tmp_path / 'sparse'
    args = ['train', '--model', 'long', '--pair_mode', 'sparse', '--sharing', 'universal', '--out', run_dir,
            '--batch', 2, '--crop', 32, '--device', 'cpu']
    r = run(*args, '--steps', 2)
    assert r.returncode == 0, r.stderr
    r = run('train', '--model', 'long', '--out', run_dir, '--batch', 2, '--crop', 32, '--steps', 3, '--resume')
    assert r.returncode == 0, r.stderr                                     # the run's own pair mode and sharing
    config = (run_dir / 'config.txt').read_text()
    assert "overrides = {'pair_mode': 'sparse', 'structure': {'sharing': 'universal'}}" in config
    assert "'pair_mode': 'sparse'" in config and "'sharing': 'universal'" in config       # the full (nested) config
    r = run('sample', run_dir / 'ckpt.pt', '--length', 40, '--count', 1, '--steps', 4, '--out', tmp_path / 's',
            '--device', 'cpu')
    assert r.returncode == 0, r.stderr
    assert_user_error(run('train', '--sharing', 'universal', '--out', tmp_path / 'x'), '--model long')


def test_curriculum_bf16_killed_and_resumed(tmp_path):
    "Curriculum options on the bundled data: a cosine curriculum in bf16, killed mid-run (SIGKILL), then resumed."
    import time
    run_dir = tmp_path / 'cur'
    args = ['train', '--model', 'long', '--out', run_dir, '--crop', 48, '--min_crop', 16, '--batch', 2,
            '--curriculum', 'cosine', '--warmup_steps', 2, '--growth_steps', 8, '--precision', 'bf16',
            '--ckpt_every', 2, '--device', 'cpu']
    proc = subprocess.Popen([EXE, *map(str, args + ['--steps', 400])], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not (run_dir / 'ckpt.pt').exists() and proc.poll() is None and time.time() < deadline: time.sleep(0.5)
    time.sleep(2)
    proc.kill()
    proc.wait()
    assert (run_dir / 'ckpt.pt').exists(), proc.stderr.read().decode()
    from genie_long.learner import load_checkpoint
    final = load_checkpoint(run_dir / 'ckpt.pt')['step'] + 6   # however far the killed run got
    r = run(*args, '--steps', final, '--resume')
    assert r.returncode == 0, r.stderr
    assert 'crop 16→48 (cosine)' in r.stdout and 'bf16' in r.stdout
    import csv
    rows = list(csv.DictReader(open(run_dir / 'metrics.csv')))
    assert [int(x['step']) for x in rows] == list(range(1, final + 1))   # no step lost or repeated
    assert int(rows[0]['length']) <= 16 < max(int(x['length']) for x in rows)
    assert_user_error(run(*args, '--steps', final + 2, '--resume', '--curriculum', 'linear'), 'curriculum')


def test_bench_json(tmp_path):
    "bench: both models side by side, fresh processes, machine-readable output with ratios and slopes."
    import json
    r = run('bench', '--models', 'reference', 'long', '--lengths', 16, 32, '--modes', 'train', '--size', 'tiny',
            '--repeats', 1, '--out', tmp_path / 'b', '--json')
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [(x['model'], x['L'], x['status']) for x in out['rows']] == [
        ('reference', 16, 'ok'), ('long', 16, 'ok'), ('reference', 32, 'ok'), ('long', 32, 'ok')]
    assert {x['L'] for x in out['ratios']} == {16, 32} and 'long/train' in out['slopes']
    assert (tmp_path / 'b' / 'bench.csv').exists() and (tmp_path / 'b' / 'bench.png').exists()
    assert_user_error(run('bench', '--models', 'nope', '--out', tmp_path / 'c'), 'nope')
    r = run('bench', '--models', 'long', '--sparse', '--checkpointing', '--compression', '--lengths', 16,
            '--modes', 'train', '--size', 'tiny', '--repeats', 1, '--out', tmp_path / 'v', '--json')
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)['rows']
    assert [x['model'] for x in rows] == ['long', 'long-sparse', 'long-nockpt', 'long-lean', 'long-shared']
    plans = {x['model']: x['plan'] for x in rows}
    assert plans['long-nockpt'] == plans['long'] == 'no saving (fastest)' and 'residue chunks' in plans['long-lean']


def test_plan():
    "plan: the cheapest memory plan for a length, every plan's estimate beside it, a clear error where none fits."
    r = run('plan', '--length', 4096, '--memory_gb', 141, '--device', 'cpu')
    assert r.returncode == 0, r.stderr
    assert 'train step of long/genie at L=4096' in r.stdout and '→' in r.stdout and 'no saving' in r.stdout
    r = run('plan', '--length', 4096, '--memory_gb', 3, '--device', 'cpu')
    assert 'every saving' not in r.stdout and 'residue chunks of 128; about' in r.stdout
    r = run('plan', '--length', 300000, '--memory_gb', 2, '--device', 'cpu')
    assert_user_error(r, 'longest chain that fits is')


def test_evaluate(tmp_path):
    "Three real chains of the bundled set as CA-only PDBs, against three others as the training set: CSV, PNG, summary."
    from genie_long.run import bundled_dataset
    from genie_long.protein import load_chains, save_dataset, write_ca
    chains = [c for c in load_chains(bundled_dataset()) if 60 <= len(c) <= 120 and not len(c.breaks)]
    for c in chains[:3]: write_ca(c.coords, tmp_path / 'samples' / f"{c.name}_{c.chain_id}.pdb")
    save_dataset(chains[3:6], tmp_path / 'train.npz')
    r = run('evaluate', tmp_path / 'samples', '--train', tmp_path / 'train.npz', '--out', tmp_path / 'ev', timeout=120)
    assert r.returncode == 0, r.stderr
    assert '3 backbones' in r.stdout and 'adjacent CA–CA' in r.stdout and 'max TM to training' in r.stdout
    lines = (tmp_path / 'ev' / 'evaluation.csv').read_text().splitlines()
    assert len(lines) == 1 + 3 + 1 and lines[-1].startswith('summary,')
    assert (tmp_path / 'ev' / 'evaluation.png').stat().st_size > 10_000
    assert 'evaluate' in run('--help').stdout
    r = run('evaluate', tmp_path / 'samples', '--train', tmp_path / 'nope.npz', '--out', tmp_path / 'e')
    assert_user_error(r, 'nope.npz')
    assert_user_error(run('evaluate', tmp_path / 'missing.pdb'), 'missing.pdb')
