"""``seaway-score`` holds a batch, not the input: peak memory does not grow with the file.

The same model scores a CSV file and a Parquet file of N rows and of 4N rows (one unit each),
with the same batch size. The scorer's high-water mark (VmHWM from /proc, sampled until it
exits) must be about the same for both sizes, and under a fixed bound, while the larger
input, were it read whole, would add far more than the allowed difference.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tests.scoring.conftest import FEATURES, KEYS, SCORER, Model, scorer_env

MIB = 1 << 20
SMALL = 400_000
#: Growth of the peak allowed between N and 4N rows: far below what holding the larger input
#: would cost (its features alone, as float64, are 3N x 6 x 8 bytes = 55 MiB more).
ALLOWED_GROWTH = 16 * MIB
#: The scorer's peak whatever the input: interpreter, scikit-learn, pandas, pyarrow, a batch.
BOUND = 400 * MIB


def write(path: Path, rows: int) -> None:
    rng = np.random.default_rng(rows)
    cols = {"id": pa.array(np.arange(rows, dtype=np.int64)),
            "region": pa.array(np.array(["north", "south", "east"])[np.arange(rows) % 3])}
    cols.update({f: pa.array(rng.normal(size=rows)) for f in FEATURES})
    table = pa.table(cols)
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path, row_group_size=20_000)


def hwm(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None  # a zombie: its memory is gone


def peak_of_run(env: dict[str, str]) -> int:
    assert Path("/proc/self/status").exists(), "this test reads /proc (Linux)"
    proc = subprocess.Popen([str(SCORER)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.005):
            value = hwm(proc.pid)
            if value is not None:
                peak = max(peak, value)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate(timeout=120)
    done.set()
    sampler.join()
    assert proc.returncode == 0, err.decode()
    assert peak > 0
    return peak


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_peak_memory_does_not_grow_with_the_input(model: Model, tmp_path: Path,
                                                  suffix: str) -> None:
    peaks = {}
    for rows in (SMALL, 4 * SMALL):
        source = tmp_path / f"in-{rows}{suffix}"
        write(source, rows)
        env = scorer_env(model=model, input_uri=str(source), output_uri=str(tmp_path / f"o{rows}"),
                         shards=1, index=0, run_id=f"mem-{rows}", work=tmp_path,
                         key_columns=KEYS, methods=("predict", "predict_proba"),
                         batch_rows=4_000)
        peaks[rows] = peak_of_run(env)
        print(f"{suffix} {rows} rows ({source.stat().st_size / MIB:.0f} MiB): peak RSS "
              f"{peaks[rows] / MIB:.1f} MiB")
    assert peaks[4 * SMALL] - peaks[SMALL] < ALLOWED_GROWTH, peaks
    assert max(peaks.values()) < BOUND, peaks
