"""Windowing and tokenizing throughput (Mbp/s) and peak memory, beside a plain read of the file.

The windows and tokenize steps stream every genome block by block (`dnalm.windows`,
`dnalm.corpus`), so their memory should not depend on the genome's size and their speed should
stay close to that of just reading the file. For each genome this script measures, each in a
fresh subprocess (so that the peak RSS is that step's own):

  stream        BGZF stream decode of the whole file (pysam.BGZFile, 1 MiB reads): the raw limit
  read          the plain read: every record fetched by region in blocks of --block-size bases
                (pysam.FastaFile.fetch, the reader the tokenize step used until it read the
                regions' bytes itself), nothing else done
  windows       the windows step as the pipeline runs it: `corpus_windows` (the pretraining
                corpus's windows) from the .fai and the BED of non-ACGT runs that normalisation
                wrote (no base read), and its parquet written by `write_parquet`
  windows-read  the same from `windows_for_genome(use_bed=False)`: every record streamed
  tokens        the tokenize step: `tokenize_windows` from that parquet to a shard (char tokenizer)
  write         writing a file of zeros as large as that shard's .bin (8 MiB writes): the disk's
                share

and prints Mbp/s (genome bases per second), the ratio to the plain read, peak RSS, and for the
tokens step the shard's size (.bin + .idx + .meta.json) per genome base.
`windows+tokens` is both steps one after the other (the time of each added up).

Every genome is first normalised as the acquire step does (`normalise_fasta`), which writes the
BED of non-ACGT runs (`{genome}.ambiguous.bed.gz`) the windows step reads. That step is not part
of windows+tokens (it runs once per genome, whatever the windows and tokenizers), but its cost is
shown in a second table, each variant in a fresh subprocess: the default compression (ISA-L
level 1) with the BED (the default) and without it (`ambiguous_bed=False`) on 1 thread and with
the BED on 2 threads, then zlib level 6 (the bytes htslib's bgzip writes, the default until
2026-11-30) and level 1 on 2 threads. Its ratios are to the plain read, in wall time (threads
work side by side) and in CPU time (every thread's CPU counted).

Genomes: E. coli K-12 (4.6 Mbp, from ../shared/data), the hg38 chr2 slice (2.3 Mbp, soft-masked,
10 kb of N), and, without --quick, a generated 1 Gbp genome (4 x 250 Mbp records with soft-masked
stretches and N runs, written as plain FASTA, generation not timed, then normalised like the
others; the files are deleted at the end). Small genomes are processed several times in each
subprocess, for at least --min-seconds, and each step runs in --processes subprocesses (3): the
process with the median CPU time is reported (the medians of single processes vary by up to
~25% from one to the next on these small files).

Both wall-clock and CPU-time (user + system) throughput are printed; on a shared machine the
CPU figures are the steadier ones, and the ratios use them. Run it on an otherwise idle machine:

  python benchmarks/stream_throughput.py [--quick] [--length 1024] [--stride 512]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "genomes" / "nonviral"
HG38 = "Hsapiens_hg38_chr2_1-2333275.fa.gz"
STEPS = ("stream", "read", "windows-read", "windows", "tokens", "write")
# normalisation: step -> (BED, threads, compressor, level); zlib 6 writes htslib's bytes
NORMALISE = {
    "normalise-nobed": (False, 1, "isal", 1),
    "normalise": (True, 1, "isal", 1),
    "normalise-2t": (True, 2, "isal", 1),
    "normalise-2t-zlib6": (True, 2, "zlib", 6),
    "normalise-2t-zlib1": (True, 2, "zlib", 1),
}


def _rss_mb() -> float:
    """Peak resident memory of this process so far.

    VmHWM, not ru_maxrss: Linux carries ru_maxrss over an exec from the parent that forked
    this subprocess, so it would report the parent's size.
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _bases(path: Path) -> int:
    from dnalm.fasta import record_lengths

    return sum(record_lengths(path).values())


def measure(step: str, genome: Path, work: Path, args: argparse.Namespace) -> dict:
    """One step on one genome, timed `reps` times in this process; prints nothing."""
    import pandas as pd
    import pysam

    from dnalm.corpus import tokenize_windows
    from dnalm.fasta import ambiguous_bed_path, normalise_fasta, record_lengths
    from dnalm.files import write_parquet
    from dnalm.tokenization import char_tokenizer, encoder_for
    from dnalm.windows import WindowSpec, corpus_windows, windows_for_genome

    spec = WindowSpec(args.length, args.stride, 0.1)
    table = work / f"{genome.name}.windows.parquet"
    if step == "tokens":
        encoder = encoder_for(char_tokenizer())
    if step in NORMALISE:  # `genome` is the source
        dest = work / ("" if step == "normalise" else step) / args.dest  # later steps read
        dest.parent.mkdir(parents=True, exist_ok=True)  # work/<genome>: the default, 1 thread

    def run() -> None:
        if step in NORMALISE:
            bed, threads, compressor, level = NORMALISE[step]
            normalise_fasta(
                genome,
                dest,
                ambiguous_bed=bed,
                threads=threads,
                compressor=compressor,
                compress_level=level,
            )
        elif step == "stream":
            with pysam.BGZFile(str(genome), "rb") as fh:
                while fh.read(1 << 20):
                    pass
        elif step == "read":
            with pysam.FastaFile(str(genome)) as fasta:
                for chrom, length in record_lengths(genome).items():
                    for start in range(0, length, args.block_size):
                        fasta.fetch(chrom, start, min(length, start + args.block_size))
        elif step == "windows":  # the pretraining corpus's windows, written as the rule does
            write_parquet(table, corpus_windows(["g"], {"g": genome}, spec))
        elif step == "windows-read":
            win = windows_for_genome(genome, spec, block_size=args.block_size, use_bed=False)
            win = pd.DataFrame({"genome": "g", **win, "strand": "+", "label": "", "label_id": -1})
            write_parquet(table, win.assign(group="g"))
        elif step == "write":
            block = bytes(8 << 20)
            with open(work / "zeros.bin", "wb") as out:
                for _ in range(-(-args.shard_bytes // len(block))):
                    out.write(block)
        else:
            tokenize_windows(
                table, {"g": genome}, encoder, work / "tokens", block_size=args.block_size
            )

    outputs = {
        "windows": [table],
        "windows-read": [table],
        "tokens": [work / f"tokens.{ext}" for ext in ("bin", "idx", "meta.json")],
        "write": [work / "zeros.bin"],
    }.get(step, [])
    if step in NORMALISE:
        bed = ambiguous_bed_path(dest)
        outputs = [dest.with_name(dest.name + ext) for ext in ("", ".fai", ".gzi")]
        outputs += [bed] if bed is not None else []

    rss_start = _rss_mb()
    walls, cpus = [], []
    while len(walls) < args.reps or (sum(walls) < args.min_seconds and len(walls) < 50):
        # Snakemake deletes a job's old outputs before it runs: replacing them is not timed
        for path in outputs:
            path.unlink(missing_ok=True)
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    out = {
        "wall_s": statistics.median(walls),
        "cpu_s": statistics.median(cpus),
        "runs": len(walls),
        "rss_start_mb": rss_start,
        "rss_peak_mb": _rss_mb(),
    }
    if step == "tokens":
        files = [work / f"tokens.{ext}" for ext in ("bin", "idx", "meta.json")]
        out["bin_bytes"] = files[0].stat().st_size
        out["shard_bytes"] = sum(f.stat().st_size for f in files if f.exists())
    return out


def _subprocess(
    step: str,
    genome: Path,
    work: Path,
    args: argparse.Namespace,
    reps: int,
    min_seconds: float,
    dest: str = "",
    shard_bytes: int = 0,
    processes: int = 1,
) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = [
        sys.executable,
        __file__,
        "--measure",
        step,
        "--genome",
        str(genome),
        "--work",
        str(work),
        "--length",
        str(args.length),
        "--stride",
        str(args.stride),
        "--block-size",
        str(args.block_size),
        "--reps",
        str(reps),
        "--min-seconds",
        str(min_seconds),
        "--dest",
        dest,
        "--shard-bytes",
        str(shard_bytes),
    ]
    runs = []
    for _ in range(processes):
        done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    # the process with the median CPU time: from one process to the next the same step's
    # median varies by up to ~25% on the small genomes (the plain read most of all)
    return sorted(runs, key=lambda run: run["cpu_s"])[len(runs) // 2]


def generate_genome(path: Path, records: int, record_length: int, seed: int = 0) -> None:
    """Random bases with realistic texture: ~half in soft-masked (lowercase) stretches, ~2% in
    N runs of 10-50 kb; written as plain FASTA, which normalisation then reads like a download."""
    import numpy as np

    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b"ACGTacgt", np.uint8)
    chunk, width = 6_000_000, 60
    with open(path, "wb") as out:
        for r in range(records):
            out.write(f">chr{r + 1}\n".encode())
            for lo in range(0, record_length, chunk):
                n = min(chunk, record_length - lo)
                codes = rng.integers(0, 4, n, dtype=np.uint8)
                mask = np.repeat(rng.integers(0, 2, -(-n // 5000), dtype=np.uint8), 5000)[:n]
                seq = alphabet[codes + 4 * mask]
                if rng.random() < 0.4:
                    at = int(rng.integers(0, max(1, n - 50_000)))
                    seq[at : at + int(rng.integers(10_000, 50_000))] = ord("N")
                full = n // width * width
                lines = np.hstack([seq[:full].reshape(-1, width), np.full((full // width, 1), 10)])
                out.write(lines.astype(np.uint8).tobytes())
                if full < n:
                    out.write(seq[full:].tobytes() + b"\n")


def _bed_runs(genome: Path) -> int:
    import gzip

    from dnalm.fasta import ambiguous_bed_path

    with gzip.open(ambiguous_bed_path(genome), "rt") as fh:
        return sum(1 for line in fh if not line.startswith("#"))


def _row(name: str, bases: int, step: str, m: dict, ref: dict, stream: dict) -> str:
    mbp = bases / 1e6
    shard = f"{m['shard_bytes'] / bases:.2f}" if "shard_bytes" in m else ""
    return (
        f"| {name} | {step} | {m['wall_s']:.3f} | {mbp / m['wall_s']:.0f} | "
        f"{mbp / m['cpu_s']:.0f} | {ref['cpu_s'] / m['cpu_s']:.2f}x | "
        f"{stream['cpu_s'] / m['cpu_s']:.2f}x | {m['rss_peak_mb']:.0f} | "
        f"{m['rss_peak_mb'] - m['rss_start_mb']:.0f} | {shard} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the generated 1 Gbp genome")
    parser.add_argument("--length", type=int, default=1024, help="window length")
    parser.add_argument("--stride", type=int, default=512, help="window stride")
    parser.add_argument("--block-size", type=int, default=None, help="bases per read block")
    parser.add_argument("--gbp", type=float, default=1.0, help="size of the generated genome")
    parser.add_argument("--tmp", type=Path, default=None, help="where temp files go")
    parser.add_argument("--reps", type=int, default=3, help="minimum runs per measurement")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="minimum timed seconds")
    parser.add_argument(
        "--processes", type=int, default=3, help="processes per small-genome step (median)"
    )
    parser.add_argument("--measure", choices=STEPS + tuple(NORMALISE), help=argparse.SUPPRESS)
    parser.add_argument("--genome", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dest", help=argparse.SUPPRESS)
    parser.add_argument("--shard-bytes", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.block_size is None:
        from dnalm.windows import DEFAULT_BLOCK_SIZE

        args.block_size = DEFAULT_BLOCK_SIZE
    if args.measure:
        print(json.dumps(measure(args.measure, args.genome, args.work, args)))
        return

    print(
        f"# window {args.length}/{args.stride}, block {args.block_size:,} bases, "
        f"load average at start {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="dnalm-stream-", dir=args.tmp) as tmp:
        tmp = Path(tmp)
        sources = [
            ("E. coli K-12", SHARED / "Ecoli_K12_MG1655_NC_000913.3.fna.gz"),
            ("hg38 chr2 slice", SHARED / HG38),
        ]
        if not args.quick:
            bases = int(args.gbp * 1e9)
            need = bases * (1.1 + 0.6 + 2 * args.length / args.stride) + 1e9
            free = shutil.disk_usage(tmp).free
            if free < need:
                sys.exit(
                    f"{tmp}: {free / 1e9:.1f} GB free, the {args.gbp} Gbp case needs ~"
                    f"{need / 1e9:.1f} GB; use --tmp elsewhere or --quick"
                )
            raw = tmp / "generated.fa"
            t = time.perf_counter()
            generate_genome(raw, 4, bases // 4)
            print(
                f"# generated {bases / 1e9:g} Gbp in {time.perf_counter() - t:.0f} s "
                f"({raw.stat().st_size / 1e9:.2f} GB plain FASTA)",
                flush=True,
            )
            sources.append((f"generated {args.gbp:g} Gbp", raw))
        throughput = [
            "| genome | step | wall s | Mbp/s | CPU Mbp/s | vs read | vs stream | "
            "peak RSS MB | RSS growth MB | shard B/base |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        normalising = [
            "| genome | normalise | threads | compression | wall s | Mbp/s | vs read | CPU s | "
            "CPU Mbp/s | CPU vs read | peak RSS MB | BED runs |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for i, (name, source) in enumerate(sources):
            work = tmp / "work"
            work.mkdir(parents=True, exist_ok=True)
            path = work / f"genome{i}.fa.gz"
            big = source.stat().st_size > 1e8  # repeat small genomes for a stable median
            reps, min_seconds = (1, 0.0) if big else (args.reps, args.min_seconds)
            procs = 1 if big else args.processes
            norm = {
                k: _subprocess(k, source, work, args, reps, min_seconds, path.name, 0, procs)
                for k in NORMALISE
            }
            for step in NORMALISE:
                if step != "normalise":
                    shutil.rmtree(work / step)
            if big:
                source.unlink()  # the generated plain FASTA: only its normalised form is needed
            n = _bases(path)
            runs = _bed_runs(path)
            m: dict[str, dict] = {}
            for step in STEPS:  # `write` writes as many bytes as the shard `tokens` wrote
                size = m["tokens"]["bin_bytes"] if step == "write" else 0
                m[step] = _subprocess(step, path, work, args, reps, min_seconds, "", size, procs)
            steps = ("windows", "tokens")
            peak = max(m[k]["rss_peak_mb"] for k in steps)
            growth = max(m[k]["rss_peak_mb"] - m[k]["rss_start_mb"] for k in steps)
            m["windows+tokens"] = {
                "wall_s": sum(m[k]["wall_s"] for k in steps),
                "cpu_s": sum(m[k]["cpu_s"] for k in steps),
                "rss_peak_mb": peak,
                "rss_start_mb": peak - growth,
                "shard_bytes": m["tokens"]["shard_bytes"],
            }
            read = m["read"]
            for k, (bed, threads, compressor, level) in NORMALISE.items():
                x = norm[k]
                normalising.append(
                    f"| {name} | {'with' if bed else 'without'} BED | {threads} | "
                    f"{compressor} {level} | "
                    f"{x['wall_s']:.3f} | {n / 1e6 / x['wall_s']:.1f} | "
                    f"{read['wall_s'] / x['wall_s']:.3f}x | {x['cpu_s']:.3f} | "
                    f"{n / 1e6 / x['cpu_s']:.1f} | {read['cpu_s'] / x['cpu_s']:.3f}x | "
                    f"{x['rss_peak_mb']:.0f} | {runs if bed else ''} |"
                )
            print("\n".join(normalising[-len(NORMALISE) :]), flush=True)
            order = ("stream", "read", "windows-read", "windows", "tokens", "windows+tokens")
            for step in (*order, "write"):
                throughput.append(_row(name, n, step, m[step], m["read"], m["stream"]))
                print(throughput[-1], flush=True)
            shutil.rmtree(work)
    print("\n## Throughput\n")
    print("\n".join(throughput))
    print("\n## Normalisation (acquire step, not part of windows+tokens)\n")
    print("\n".join(normalising))
    print(f"# load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
