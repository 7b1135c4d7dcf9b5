"""The sample-quality-versus-compute study of notebook 12: train one model in chunks of steps with `genie-long train`
(each chunk resumes the last, bit for bit on a CPU), keep a snapshot of the weights after each chunk, and score every
snapshot: fixed-seed samples with `genie-long sample` and `genie-long evaluate --no_tm` (`study.csv`), and the
held-out ε-loss on windows of 128 to 2,048 residues (`length_loss.csv`). Everything lands in the study folder, and
running the same command again continues where it stopped, on this machine or on another that has the folder.

    python scripts/quality_study.py runs/small --size small --until 20000 --chunk 1000 -- \
        --crop 256 --batch 16 --lr 1e-3 --curriculum cosine --min_crop 64 --warmup_steps 300 --growth_steps 2500 \
        --ema 0.999 --val_every 500

Arguments after `--` go to `genie-long train` unchanged (give the curriculum's --warmup_steps and --growth_steps: their
defaults follow --steps, which grows chunk by chunk).
"""
import csv
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
from fastcore.script import call_parse, Param

LOSS_FIELDS = ['step', 'L', 'chains', 'n', 'eps_loss']
FIELDS = ['step', 'train_s', 'threads', 'cpu_hours', 'val_loss', 'L', 'n', 'bonds', 'clash_residues', 'rg_ratio',
          'helix', 'strand']


def run(args: list, log: Path):
    "Run `genie-long *args`, appending its output to `log`; stop the study with the command's own message on failure."
    with open(log, 'a') as fh:
        fh.write(f"\n$ genie-long {' '.join(map(str, args))}\n")
        fh.flush()
        r = subprocess.run(['genie-long', *map(str, args)], stdout=fh, stderr=subprocess.STDOUT)
    if r.returncode: sys.exit(f"genie-long {args[0]} failed (exit {r.returncode}); see {log}")


def last_row(path: Path, step: int, key: str = 'step') -> dict:
    "The last row of a CSV whose `key` is at most `step` ({} if none)."
    if not path.exists(): return {}
    rows = [r for r in csv.DictReader(open(path)) if int(float(r[key])) <= step]
    return rows[-1] if rows else {}


def bonds_within(npy: Path, tol: float = 0.2) -> float:
    "Fraction of adjacent CA–CA distances within 3.8 ± `tol` Å (the goal's measure; `evaluate` checks ± 0.1)."
    d = np.linalg.norm(np.diff(np.load(npy), axis=0), axis=-1)
    return float((np.abs(d - 3.8) <= tol).mean())


def score(snapshot: Path, work: Path, lengths, count: int, steps: int, threads: int, log: Path,
          noise_scale: float = 0.6) -> dict:
    """Per-length means of the evaluation metrics of `count` samples per length (seed 0) from `snapshot` (the median
    for the Rg ratio); `bonds` within 3.8 ± 0.2 Å."""
    samples = work / 'samples'
    run(['sample', snapshot, '--lengths', *lengths, '--count', count, '--steps', steps, '--noise_scale', noise_scale,
         '--seed', 0, '--out', samples, '--overwrite', '--threads', threads, '--device', 'cpu'], log)
    run(['evaluate', samples, '--no_tm', '--out', work / 'eval'], log)
    rows = list(csv.DictReader(open(work / 'eval' / 'evaluation.csv')))
    out = {}
    for L in lengths:
        rs = [r for r in rows if r['name'].startswith(f"L{L:04d}_")]
        mean = lambda k: statistics.fmean(float(r[k]) for r in rs)
        bonds = statistics.fmean(bonds_within(samples / f"{r['name']}.npy") for r in rs)
        out[L] = dict(n=len(rs), bonds=bonds, clash_residues=mean('clash_residues'),
                      rg_ratio=statistics.median(float(r['rg_ratio']) for r in rs), helix=mean('helix'),
                      strand=mean('strand'))
    return out


# what follows `--` is for `genie-long train`, not for this script's parser
TRAIN_ARGS = sys.argv[sys.argv.index('--') + 1:] if '--' in sys.argv else []
del sys.argv[len(sys.argv) - len(TRAIN_ARGS) - ('--' in sys.argv):]


def length_losses(snapshot: Path, split: Path, lengths=(128, 256, 512, 1024, 2048)) -> list[dict]:
    """Held-out ε-loss (Genie's, fixed timesteps and noise) on windows of exactly L residues: the central window of
    every held-out chain at least L long (at most 32), or of every training chain where no held-out chain is that
    long (the bundled set holds out no chain of 1,024 or more)."""
    import torch
    from genie_long.run import model_from_checkpoint
    from genie_long.training import validation_batch, validation_loss
    torch.manual_seed(0)
    model, _ = model_from_checkpoint(snapshot)
    rows = []
    for L in lengths:
        for chains in ('val', 'train'):
            try: batch = validation_batch(split / f"{chains}.npz", crop=L, max_chains=32, min_length=L)
            except ValueError: continue                      # no chain that long in this part
            with torch.no_grad(): loss = validation_loss(model, batch, batch_size=max(1, 2048 // L))
            rows.append(dict(L=L, chains='held-out' if chains == 'val' else 'training', n=len(batch['coords']),
                             eps_loss=round(loss, 5)))
            break
    return rows


def score_lengths(out: Path):
    "`length_losses` of every snapshot not yet in `length_loss.csv` (snapshots of a run without a split: none)."
    table, split = out / 'length_loss.csv', out / 'train' / 'split'
    if not split.exists(): return
    done = {int(r['step']) for r in read_rows(table)}
    for snap in sorted((out / 'snapshots').glob('step*.pt')):
        step = int(snap.stem[4:])
        if step not in done: append(table, LOSS_FIELDS, [dict(step=step, **r) for r in length_losses(snap, split)])


def record(table: Path, step: int, scores: dict, metrics: dict, val: dict, threads: int):
    "Append a snapshot's scores (a row per sample length) to `table`, with its compute and held-out ε-loss; say them."
    hours = round(float(metrics['seconds']) * threads / 3600, 4)
    append(table, FIELDS, [dict(step=step, train_s=metrics['seconds'], threads=threads, cpu_hours=hours,
                                val_loss=val.get('val_loss', ''), L=L,
                                **{k: round(x, 4) if isinstance(x, float) else x for k, x in s.items()})
                           for L, s in scores.items()])
    print(f"step {step}: " + "; ".join(f"L={L} bonds {s['bonds']:.2f} Rg ratio {s['rg_ratio']:.2f} "
                                       f"helix+strand {s['helix'] + s['strand']:.2f}" for L, s in scores.items()),
          flush=True)


def read_rows(table: Path) -> list[dict]:
    "The rows of the CSV `table` so far ([] before it is written): what a resumed study has already done."
    return list(csv.DictReader(open(table))) if table.exists() else []


def append(table: Path, fields: list, rows: list):
    "Append `rows` to the CSV `table`, with a header if it is new; a table with other columns is an error, not a mix."
    new = not table.exists()
    if not new and (head := next(csv.reader(open(table)), [])) != list(fields):
        raise SystemExit(f"{table}: its columns {head} are not {list(fields)}; move it aside or write elsewhere")
    with open(table, 'a', newline='') as fh:
        w = csv.DictWriter(fh, fields)
        if new: w.writeheader()
        w.writerows(rows)


@call_parse
def main(out: Param("study folder: train/ (the run), snapshots/, study.csv, length_loss.csv", str),
         size: Param("model size (genie-long train --size)", str) = 'small',
         until: Param("train until this step", int) = 20_000,
         chunk: Param("steps between snapshots", int) = 1000,
         lengths: Param("sample lengths scored at each snapshot", int, nargs='+') = (128, 512),
         count: Param("samples per length", int) = 2,
         sample_steps: Param("sampling steps", int) = 100,
         threads: Param("CPU threads for training and sampling", int) = 1,
         init: Param("start from this checkpoint's weights (a fine-tune, e.g. at longer crops), scored as step 0",
                     str) = None):
    "Train in chunks, snapshot, score; append to study.csv and length_loss.csv. Re-running continues."
    out = Path(out)
    (out / 'snapshots').mkdir(parents=True, exist_ok=True)
    table, log, ckpt = out / 'study.csv', out / 'study.log', out / 'train' / 'ckpt.pt'
    done = {int(r['step']) for r in read_rows(table)}
    sample = lambda snap: score(snap, out / 'work', lengths, count, sample_steps, threads, log)
    if init and not ckpt.exists() and 0 not in done:               # the starting point of a fine-tune: step 0
        snap0 = out / 'snapshots' / 'step000000.pt'
        shutil.copy(init, snap0)
        record(table, 0, sample(snap0), {'seconds': 0}, {}, threads)
    step = int(last_row(out / 'train' / 'metrics.csv', 10**12).get('step', 0))
    while step < until:
        target = min(until, (step // chunk + 1) * chunk)
        start = ['--resume'] if ckpt.exists() else (['--init', init] if init else [])
        run(['train', '--model', 'long', '--size', size, '--out', out / 'train', '--steps', target, '--device', 'cpu',
             '--threads', threads, '--ckpt_every', chunk, *start, *TRAIN_ARGS], log)
        step = target
        snap = out / 'snapshots' / f"step{step:06d}.pt"
        shutil.copy(ckpt, snap)
        if step in done: continue
        m, v = last_row(out / 'train' / 'metrics.csv', step), last_row(out / 'train' / 'val.csv', step)
        record(table, step, sample(snap), m, v, threads)
        score_lengths(out)
