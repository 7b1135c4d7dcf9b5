"""Bad input and faults, as a user or an attacker would meet them, through the installed `genie-long` command: each
case is made in a temporary folder and its outcome asserted: a one-line error naming the culprit (no traceback), and
nothing lost (the old dataset still loads, earlier checkpoints and samples stay)."""
import os, random, resource, signal, time
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import FIXTURES, run, start, assert_user_error
from genie_long.protein import load_chains, save_dataset, write_ca
from genie_long.learner import load_checkpoint

PDB = FIXTURES / 'Kortemme-Lab__ddg' / '1BPI.pdb.gz'
TRAIN = ['--batch', 2, '--crop', 24, '--device', 'cpu']


def wait_for(cond, proc, timeout=120):
    "Poll until `cond()` holds; fail if the process ends first or time runs out."
    deadline = time.time() + timeout
    while not cond():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, 'timed out'
        time.sleep(0.05)


def steps_done(run_dir: Path) -> int:
    "Complete rows of a run's metrics.csv."
    p = run_dir / 'metrics.csv'
    return max(0, p.read_text().count('\n') - 1) if p.exists() else 0


def same_weights(a: Path, b: Path):
    "Two checkpoints hold bitwise the same weights at the same step."
    x, y = load_checkpoint(a), load_checkpoint(b)
    assert x['step'] == y['step'], (x['step'], y['step'])
    for k in x['model']: assert torch.equal(x['model'][k], y['model'][k]), k


@pytest.fixture(scope='module')
def small_run(tmp_path_factory):
    "A 4-step run of the tiny reference model on the bundled data: its checkpoint."
    d = tmp_path_factory.mktemp('small') / 'run'
    r = run('train', '--out', d, '--steps', 4, *TRAIN)
    assert r.returncode == 0, r.stderr
    return d / 'ckpt.pt'


# 1. A checkpoint cannot run code.
def test_crafted_pickle_does_not_execute(tmp_path):
    marker = tmp_path / 'pwned'
    class Exploit:
        def __reduce__(self): return (os.system, (f"touch {marker}",))
    torch.save({'model': {}, 'step': 0, 'meta': {}, 'payload': Exploit()}, tmp_path / 'evil.pt')
    assert_user_error(run('sample', tmp_path / 'evil.pt', '--out', tmp_path / 's'), 'evil.pt: refused', 'posix.system')
    (tmp_path / 'run').mkdir(); (tmp_path / 'run' / 'ckpt.pt').write_bytes((tmp_path / 'evil.pt').read_bytes())
    assert_user_error(run('train', '--out', tmp_path / 'run', '--steps', 9, '--resume'), 'ckpt.pt: refused')
    assert_user_error(run('train', '--out', tmp_path / 'r2', '--init', tmp_path / 'evil.pt'), 'evil.pt: refused')
    assert not marker.exists()


# 2. Non-finite or absurd coordinates never enter a dataset, a training run or TM-align.
def corrupt_pdb(src: Path, dst: Path, value: str) -> Path:
    "A CA-only copy of a real chain whose 5th CA has x = `value`."
    from genie_long.protein import read_chains
    write_ca(read_chains(src)[0][0].coords, dst)
    lines = dst.read_text().splitlines(keepends=True)
    k = [i for i, l in enumerate(lines) if l.startswith('ATOM')][4]
    lines[k] = lines[k][:30] + f"{value:>8s}" + lines[k][38:]
    dst.write_text(''.join(lines))
    return dst


def test_prepare_rejects_bad_coordinates(tmp_path):
    bad = [corrupt_pdb(PDB, tmp_path / f"bad_{v}.pdb", v) for v in ('nan', 'inf', '1e9')]
    r = run('prepare', *bad, PDB, '--out', tmp_path / 'd.npz')
    assert r.returncode == 0, r.stderr
    assert 'kept 1 chains' in r.stdout
    assert 'bad_nan:A: non-finite CA coordinates at residue 5' in r.stdout
    assert 'bad_1e9:A: absurd CA coordinate 1e+09 Å at residue 5' in r.stdout
    assert [c.name for c in load_chains(tmp_path / 'd.npz')] == ['1BPI']
    assert_user_error(run('prepare', *bad, '--out', tmp_path / 'e.npz'), 'no chain passed')


def test_train_refuses_poisoned_dataset(tmp_path):
    from genie_long.run import bundled_dataset
    good = load_chains(bundled_dataset())[:5]
    save_dataset(good, tmp_path / 'd.npz')
    d = dict(np.load(tmp_path / 'd.npz'))
    d['coords'] = d['coords'].copy(); d['coords'][len(good[0]) + 3] = np.inf              # chain 2, residue 4
    np.savez(tmp_path / 'poisoned.npz', **d)
    assert_user_error(run('train', '--data', tmp_path / 'poisoned.npz', '--out', tmp_path / 'r', '--steps', 3, *TRAIN),
                      'poisoned.npz', f"chain {good[1].label} has non-finite CA coordinates at residue 4")
    assert not (tmp_path / 'r' / 'ckpt.pt').exists()


def test_diverging_run_stops_with_an_error(tmp_path):
    r = run('train', '--out', tmp_path / 'r', '--steps', 60, '--lr', 1e6, *TRAIN)
    assert_user_error(r, 'steps were all skipped')
    assert 0 < load_checkpoint(tmp_path / 'r' / 'ckpt.pt')['step'] < 60


def test_evaluate_skips_bad_files(tmp_path):
    from genie_long.protein import read_chains
    x = read_chains(PDB)[0][0].coords
    s = tmp_path / 'samples'; s.mkdir()
    write_ca(x, s / 'good.pdb'); write_ca(x + 1.0, s / 'good2.pdb')
    far = x.copy(); far[3, 0] = 1e5; np.save(s / 'far.npy', far)        # TM-align would hang on it
    nan = x.copy(); nan[7] = np.nan; np.save(s / 'nan.npy', nan)
    r = run('evaluate', *sorted(s.iterdir()), '--out', tmp_path / 'ev', timeout=120)
    assert r.returncode == 0, r.stderr
    assert '2 backbones' in r.stdout and 'skipped 2' in r.stdout
    assert 'far.npy' in r.stdout and 'absurd CA coordinate' in r.stdout and 'nan.npy' in r.stdout
    assert_user_error(run('evaluate', s / 'far.npy', s / 'nan.npy', '--out', tmp_path / 'e2'), 'far.npy')


# 3. Writes that could destroy or lose work.
def limit_file_size(nbytes: int):
    "For `preexec_fn`: writes past `nbytes` fail with EFBIG (SIGXFSZ ignored), as on a full disk."
    def set_limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return set_limit


def test_prepare_failed_write_keeps_old_dataset(tmp_path):
    out = tmp_path / 'd.npz'
    assert run('prepare', PDB, '--out', out).returncode == 0
    before = out.read_bytes()
    r = run('prepare', FIXTURES, '--out', out, preexec_fn=limit_file_size(len(before) + 100))
    assert_user_error(r, 'File too large')
    assert out.read_bytes() == before and len(load_chains(out)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ['d.npz']          # no temporary file left behind
    r = run('prepare', PDB, '--out', tmp_path / 'plain')
    assert r.returncode == 0 and f"→ {tmp_path / 'plain.npz'}" in r.stdout and (tmp_path / 'plain.npz').exists()


def test_sample_output_checked_first_and_written_as_it_goes(tmp_path, small_run):
    (tmp_path / 'afile').write_text('x')
    assert_user_error(run('sample', small_run, '--out', tmp_path / 'afile' / 's', '--steps', 2),
                      'afile/s', 'cannot write')
    out = tmp_path / 's'
    assert run('sample', small_run, '--lengths', 12, '--count', 1, '--steps', 2, '--out', out).returncode == 0
    assert_user_error(run('sample', small_run, '--lengths', 12, '--steps', 2, '--out', out), '--overwrite')
    assert (out / 'L0012_00.pdb').exists()
    r = run('sample', small_run, '--lengths', 14, '--count', 1, '--steps', 2, '--out', out, '--overwrite')
    assert r.returncode == 0 and sorted(p.name for p in out.glob('L*')) == ['L0014_00.npy', 'L0014_00.pdb']
    # killed after its first batch (the longest chains come first): that batch's backbones are already on disk
    proc = start('sample', small_run, '--lengths', 60, 100, '--count', 1, '--steps', 40, '--out', tmp_path / 'k')
    wait_for(lambda: (tmp_path / 'k' / 'L0100_00.pdb').exists(), proc)
    proc.kill(); proc.wait()
    assert len(np.load(tmp_path / 'k' / 'L0100_00.npy')) == 100 and not (tmp_path / 'k' / 'L0060_00.npy').exists()


def test_one_run_per_folder_and_no_stale_lock(tmp_path):
    d = tmp_path / 'r'
    first = start('train', '--out', d, '--steps', 100000, '--ckpt_every', 5, *TRAIN)
    wait_for(lambda: (d / 'ckpt.pt').exists(), first)
    second = run('train', '--out', d, '--steps', 100000, '--resume', *TRAIN)
    assert_user_error(second, f"{d} is in use by genie-long (pid {first.pid}")
    first.kill(); first.wait()                                               # kill -9: the lock goes with it
    step = load_checkpoint(d / 'ckpt.pt')['step']
    r = run('train', '--out', d, '--steps', step + 2, '--resume', *TRAIN)
    assert r.returncode == 0, r.stderr


# 4. Interrupted runs resume exactly, bit for bit.
@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    d = tmp_path_factory.mktemp('ref') / 'run'
    r = run('train', '--out', d, '--steps', 24, '--ckpt_every', 5, *TRAIN)
    assert r.returncode == 0, r.stderr
    return d


@pytest.mark.parametrize('sig,seed', [(signal.SIGINT, 1), (signal.SIGINT, 2), (signal.SIGKILL, 3), (signal.SIGKILL, 4)])
def test_interrupt_and_resume_is_exact(tmp_path, uninterrupted, sig, seed):
    d, at = tmp_path / 'run', random.Random(seed).randint(2, 18)
    proc = start('train', '--out', d, '--steps', 24, '--ckpt_every', 5, *TRAIN)
    wait_for(lambda: steps_done(d) >= at, proc)
    proc.send_signal(sig); proc.wait(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and 'Traceback' not in proc.stderr.read()
        assert load_checkpoint(d / 'ckpt.pt')['step'] >= at                     # the state at the interrupt, saved
    with open(d / 'metrics.csv', 'a') as f: f.write('99,0.5')                  # and a row torn by the kill
    r = run('train', '--out', d, '--steps', 24, '--resume', *TRAIN)
    assert r.returncode == 0, r.stderr
    same_weights(d / 'ckpt.pt', uninterrupted / 'ckpt.pt')
    assert [int(l.split(',')[0]) for l in (d / 'metrics.csv').read_text().splitlines()[1:]] == list(range(1, 25))


def test_exported_checkpoint_is_not_resumed_but_can_start_a_run(tmp_path, small_run):
    from genie_long.run import export_model
    d = tmp_path / 'run'; d.mkdir()
    export_model(small_run, d / 'ckpt.pt')
    assert_user_error(run('train', '--out', d, '--steps', 9, '--resume', *TRAIN), 'weights only', '--init')
    r = run('train', '--out', tmp_path / 'ft', '--steps', 2, '--init', d / 'ckpt.pt', *TRAIN)
    assert r.returncode == 0, r.stderr
    assert 'init = ' in (tmp_path / 'ft' / 'config.txt').read_text()
    assert_user_error(run('train', '--model', 'long', '--out', tmp_path / 'x', '--init', d / 'ckpt.pt'),
                      'reference/tiny')


# 5. Expected failures are one line; --debug shows the traceback. (Permission errors: root, which runs these tests,
# ignores file modes, so 12_cli tests those branches in-process.)
def test_one_line_errors(tmp_path, small_run):
    (tmp_path / 'afile').write_text('x')
    assert_user_error(run('train', '--out', tmp_path / 'afile', '--steps', 2, *TRAIN), 'afile')
    assert_user_error(run('prepare', PDB, '--out', tmp_path / 'afile' / 'd.npz'), 'afile')
    assert_user_error(run('prepare', PDB, '--out', tmp_path), 'is a folder')
    ck = load_checkpoint(small_run)
    ck['meta'] = {**ck['meta'], 'config': {**ck['meta']['config'], 'warp_drive': 1}}
    torch.save(ck, tmp_path / 'future.pt')
    assert_user_error(run('sample', tmp_path / 'future.pt', '--out', tmp_path / 's'), 'future.pt', 'warp_drive')
    r = run('--debug', 'sample', tmp_path / 'future.pt', '--out', tmp_path / 's')
    assert r.returncode == 2 and 'Traceback' in r.stderr and 'warp_drive' in r.stderr.splitlines()[-1]
    # an allocation the machine refuses (here: an address-space limit) is one line too
    limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))
    r = run('sample', small_run, '--lengths', 6000, '--count', 1, '--steps', 1, '--out', tmp_path / 'big',
            '--memory_gb', 1000, preexec_fn=limit)
    assert_user_error(r, 'out of memory')


# 6.–8. Memory guard, threads, small validations.
def test_memory_guard_and_small_validations(tmp_path, small_run):
    assert_user_error(run('sample', small_run, '--lengths', 100000, '--out', tmp_path / 's'), 'longest chain that fits')
    assert_user_error(run('sample', small_run, '--threads', 0, '--out', tmp_path / 's'), '--threads')
    r = run('train', '--out', tmp_path / 'r', '--steps', 1, '--threads', 1, *TRAIN)
    assert r.returncode == 0 and 'on cpu (1 thread)' in r.stdout, r.stderr
    for args, flag in ((('--lengths', 0), '--lengths'), (('--repeats', 0), '--repeats'),
                       (('--mem_cap_gb', -1), '--mem_cap_gb'), (('--time_cap_s', -5), '--time_cap_s')):
        assert_user_error(run('bench', *args, '--out', tmp_path / 'b'), flag)
    for args in (('--minutes', -1), ('--grad_clip', 0), ('--aux_weight', -1)):
        assert_user_error(run('train', *args, '--out', tmp_path / 'r2'), args[0])
