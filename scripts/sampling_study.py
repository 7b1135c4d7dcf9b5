"""Sampling settings measured, not assumed (notebook 12): `genie-long sample` of one checkpoint for every pair of
sampling steps and noise scale, scored by `genie-long evaluate --no_tm` and bonds within 3.8 ± 0.2 Å, one row per
(steps, noise scale, length) appended to OUT/settings.csv with the wall time of sampling and scoring. Running it
again skips the settings already measured.

    python scripts/sampling_study.py genie_long/data/demo_long.pt runs/settings --steps 100 250 1000 \
        --noise 0.5 0.6 0.8 1.0 --lengths 256 --count 4
"""
import csv
import sys
import time
from pathlib import Path

from fastcore.script import call_parse, Param

sys.path.insert(0, str(Path(__file__).parent))
from quality_study import score, read_rows, append   # noqa: E402  (a sibling script)

FIELDS = ['steps', 'noise_scale', 'L', 'n', 'seconds', 'bonds', 'clash_residues', 'rg_ratio', 'helix', 'strand']


@call_parse
def main(ckpt: Param("checkpoint to sample", str),
         out: Param("study folder (settings.csv, study.log)", str),
         steps: Param("sampling steps to try", int, nargs='+') = (100, 250, 1000),
         noise: Param("noise scales to try", float, nargs='+') = (0.5, 0.6, 0.8, 1.0),
         lengths: Param("sample lengths", int, nargs='+') = (256,),
         count: Param("samples per length", int) = 4,
         threads: Param("CPU threads", int) = 1):
    "Every (steps, noise scale) pair: sample, score, append to settings.csv."
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / 'settings.csv'
    done = {(int(r['steps']), float(r['noise_scale'])) for r in read_rows(table)}
    for n_steps in steps:
        for ns in noise:
            if (n_steps, ns) in done: continue
            t0 = time.time()
            scores = score(Path(ckpt), out / 'work', lengths, count, n_steps, threads, out / 'study.log',
                           noise_scale=ns)
            dt = round(time.time() - t0, 1)
            append(table, FIELDS, [dict(steps=n_steps, noise_scale=ns, L=L, seconds=dt,
                                        **{k: round(v, 4) if isinstance(v, float) else v for k, v in s.items()})
                                   for L, s in scores.items()])
            print(f"steps {n_steps}, noise {ns}: " + "; ".join(
                f"L={L} bonds {s['bonds']:.2f} clash {s['clash_residues']:.3f} Rg ratio {s['rg_ratio']:.2f} "
                f"helix+strand {s['helix'] + s['strand']:.2f}" for L, s in scores.items()) + f" ({dt:.0f} s)",
                  flush=True)
