"""A checkpoint sampled as `genie-long demo` samples (one chain per length, 100 strided steps, noise 0.6, seed 0;
or the steps and noise given), timed, and scored with the issue's measures (notebook 12): bonds within 3.8 ± 0.2 Å,
residues in a CA–CA clash (< 3 Å, |i−j| > 2), Rg over 2.2·L^0.38, P-SEA helix and strand. A row per length goes to
OUT/demo_scores.csv with the wall-clock seconds of `genie-long sample`; running it again skips the lengths already
scored at the same steps and noise.

    python scripts/demo_scores.py genie_long/data/demo_long.pt runs/demo_shipped --name shipped --threads 1
"""
import csv
import sys
import time
from pathlib import Path

import numpy as np
from fastcore.script import call_parse, Param

from genie_long.evaluation import clash_stats, rg_stats, sse_fractions
from genie_long.protein import atomic_write

sys.path.insert(0, str(Path(__file__).parent))
from quality_study import run, read_rows, append, bonds_within   # noqa: E402  (a sibling script)

FIELDS = ['model', 'L', 'steps', 'noise', 'seconds', 'bonds', 'clash_residues', 'rg_ratio', 'helix', 'strand']


def goal_scores(npy: Path) -> dict:
    "The issue's four measures of one sampled CA trace (`.npy`)."
    x = np.load(npy)
    sse = sse_fractions(x)
    return dict(bonds=bonds_within(npy), clash_residues=clash_stats(x, min_sep=3)['clash_residues'],
                rg_ratio=rg_stats(x)['rg_ratio'], helix=sse['helix'], strand=sse['strand'])


@call_parse
def main(ckpt: Param("checkpoint to sample", str),
         out: Param("folder for the samples and demo_scores.csv", str),
         name: Param("the model's name in the table", str) = None,
         lengths: Param("chain lengths, longest first as the demo draws them", int, nargs='+') = (2048, 1024, 256),
         steps: Param("sampling steps", int) = 100,
         noise: Param("noise scale", float) = 0.6,
         threads: Param("CPU threads", int) = 1):
    "Sample and score one chain per length; append a row per length to demo_scores.csv."
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / 'demo_scores.csv'
    rows = read_rows(table)
    if rows and 'noise' not in rows[0]:   # a table from before --noise: its rows were sampled at 0.6
        rows = [{**r, 'noise': 0.6} for r in rows]
        with atomic_write(table, 'w', newline='') as fh:
            w = csv.DictWriter(fh, FIELDS); w.writeheader(); w.writerows(rows)
    done = {(int(r['L']), int(r['steps']), float(r['noise'])) for r in rows}   # a row is done for its settings
    for L in lengths:
        if (L, steps, noise) in done: continue
        folder, t0 = out / f"L{L}_s{steps}_n{noise:g}", time.time()
        run(['sample', ckpt, '--lengths', L, '--count', 1, '--steps', steps, '--noise_scale', noise, '--seed', 0,
             '--out', folder, '--overwrite', '--threads', threads, '--device', 'cpu'], out / 'demo_scores.log')
        row = dict(model=name or Path(ckpt).stem, L=L, steps=steps, noise=noise, seconds=round(time.time() - t0),
                   **{k: round(v, 4) for k, v in goal_scores(folder / f"L{L:04d}_00.npy").items()})
        append(table, FIELDS, [row])
        print(', '.join(f"{k} {v}" for k, v in row.items()), flush=True)
