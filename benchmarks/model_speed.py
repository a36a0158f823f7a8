"""Speed and memory of the two architectures, side by side, on this machine.

Two tables (Markdown, ready for docs/performance.md):

1. For each architecture x named size: parameters, training tokens/s (forward, backward and an
   AdamW step), inference tokens/s (forward in inference mode) and the training peak memory.
   Each row runs in a fresh process, so on the CPU the peak is the process's resident
   high-water mark (VmHWM) above its level once torch is imported: model, optimizer state and
   activations. On a GPU it is `torch.cuda.max_memory_allocated`.
2. Forward+backward time of one sequence against its length (256 to 32k on the CPU, up to 1M on
   a GPU), hyena vs gpt at the same size, with the ratio gpt/hyena: where it passes 1, the FFT long
   convolution (O(L log L)) overtakes attention (O(L^2)). HyenaDNA reports 160x at 1M tokens on
   an A100. A length whose estimated time exceeds `--max-seconds` is skipped, not run.

On a GPU the models run under bf16 autocast (the Hyena filter and FFTs stay in float32). Timings
are the fastest of the repeats (the least disturbed by other processes). Run it on an otherwise
idle machine:

    python benchmarks/model_speed.py --quick          # CPU, a few minutes
    python benchmarks/model_speed.py --device cuda    # GPU, lengths up to 1M

With `--reference PATH/standalone_hyenadna.py` (the official HyenaDNA code, from
github.com/HazyResearch/hyena-dna; it is imported from that path at run time, never copied here)
it instead races dnalm's Hyena against the official implementation at the same shape (and gpt,
for scale) at 1 and 2 threads (`--race-threads`): one fresh process per thread count, the same
training loop (forward, next-token loss, backward, AdamW) on the same random DNA batch, steps
alternating between the models, the fastest of `--repeats` kept for each. It prints tokens/s of
each and the ratio dnalm / official, by wall time and by CPU time (steadier on a shared machine).
The official model is built as HyenaDNA's configs build it (`HyenaDNAModel`, Hyena layers,
pre-norm blocks, a head tied to the embeddings) with dropout 0 and the positional features as a
buffer (`lr_pos_emb: 0`), so that both models compute the same function with the same 436,096
parameters at tiny-1k. Its imports of `einops` and `torchvision` (for `rearrange` and
`StochasticDepth`) are replaced by minimal stand-ins when those packages are not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

CPU_LENGTHS = [256, 512, 1024, 2048, 4096, 8192, 16384, 32768]
GPU_LENGTHS = [*CPU_LENGTHS, 65536, 131072, 262144, 524288, 1048576]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="micro,tiny-1k,small-32k", help="comma-separated sizes")
    parser.add_argument("--archs", default="hyena,gpt", help="comma-separated architectures")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--batch", type=int, default=8, help="sequences per step (table 1)")
    parser.add_argument("--seq-len", type=int, default=1024, help="tokens per sequence (table 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--scaling-size", default="tiny-1k", help="model size of table 2")
    parser.add_argument(
        "--lengths", default=None, help="comma-separated lengths of table 2 (default by device)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=60.0, help="skip a length estimated to take longer"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the models first")
    parser.add_argument("--quick", action="store_true", help="2 repeats, lengths up to 16k on CPU")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--reference", type=Path, default=None, help="official standalone_hyenadna.py: race it"
    )
    parser.add_argument("--race-size", default="tiny-1k", help="model size of the race")
    parser.add_argument("--race-threads", default="1,2", help="thread counts of the race")
    parser.add_argument(
        "--optimizer",
        choices=("default", "foreach", "fused"),
        default="default",
        help="AdamW implementation of the race (both models)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="where a training step's time goes (torch.profiler, by op category): dnalm's hyena "
        "at the race shape, and the official code beside it with --reference",
    )
    parser.add_argument("--one", nargs=2, metavar=("ARCH", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--race", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = min(args.repeats, 2)
    return args


# --- memory -----------------------------------------------------------------------------------


def _rss_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@contextlib.contextmanager
def peak_memory(device):
    """Yields a dict that holds `peak_mib` (the block's peak above its starting level) after."""
    import torch

    result: dict[str, float | None] = {"peak_mib": None}
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        yield result
        torch.cuda.synchronize()
        result["peak_mib"] = (torch.cuda.max_memory_allocated() - start) / 2**20
        return
    # A fresh process: its high-water mark is this block's peak (freed memory that the allocator
    # kept would hide a later peak in a long-lived process).
    start = _rss_kib("VmRSS")
    yield result
    peak = _rss_kib("VmHWM")
    if start is not None and peak is not None:
        result["peak_mib"] = (peak - start) / 1024


# --- models -----------------------------------------------------------------------------------


def build(arch: str, size: str, max_seq_len: int, device, compile_model: bool):
    import torch
    from transformers import AutoModelForCausalLM

    from dnalm.models import compile_blocks, count_parameters, model_config

    torch.manual_seed(0)
    config = model_config(arch, size, vocab_size=12, pad_token_id=4, max_seq_len=max_seq_len)
    model = AutoModelForCausalLM.from_config(config).to(device)
    if compile_model:
        model = compile_blocks(model) if arch == "hyena" else torch.compile(model)
    return model, count_parameters(model)


def autocast(device):
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def fastest(fn, repeats: int, device) -> float:
    """Seconds of the fastest of `repeats` calls, after one warm-up call."""
    fn()
    sync(device)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def _train_step(model, optimizer, x, device):
    def step():
        with autocast(device):
            loss = model(input_ids=x, labels=x).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def throughput(arch: str, size: str, args, device) -> dict:
    import torch

    # A throw-away model first: the lazily imported modelling code is not the model's memory.
    build(arch, "micro", 8, device, False)
    with peak_memory(device) as mem:
        model, params = build(arch, size, args.seq_len, device, args.compile)
        x = torch.randint(7, 11, (args.batch, args.seq_len), device=device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        model.train()
        train_s = fastest(_train_step(model, optimizer, x, device), args.repeats, device)

    def infer_step():
        with torch.inference_mode(), autocast(device):
            model(input_ids=x)

    model.eval()
    infer_s = fastest(infer_step, args.repeats, device)
    tokens = args.batch * args.seq_len
    return {
        "arch": arch,
        "size": size,
        "params": params,
        "train_tok_s": tokens / train_s,
        "infer_tok_s": tokens / infer_s,
        "train_peak_mib": mem["peak_mib"],
    }


def scaling(arch: str, lengths: list[int], args, device) -> dict[int, float | None]:
    """Forward+backward seconds of one sequence per length (None: skipped or out of memory)."""
    import torch

    model, _ = build(arch, args.scaling_size, max(lengths), device, args.compile)
    model.train()
    times: dict[int, float | None] = {}
    previous: tuple[int, float] | None = None
    for length in lengths:
        if previous is not None:
            # attention grows ~L^2; skip what would take too long
            estimate = previous[1] * (length / previous[0]) ** (2 if arch == "gpt" else 1.2)
            if estimate > args.max_seconds:
                times[length] = None
                print(f"  {arch} L={length}: skipped (estimated {estimate:.0f} s)", file=sys.stderr)
                continue
        x = torch.randint(7, 11, (1, length), device=device)

        def step(x=x):
            with autocast(device):
                loss = model(input_ids=x, labels=x).loss
            loss.backward()
            model.zero_grad(set_to_none=True)

        try:
            seconds = fastest(step, max(1, args.repeats // 2), device)
        except torch.OutOfMemoryError:
            times[length] = None
            print(f"  {arch} L={length}: out of memory", file=sys.stderr)
            torch.cuda.empty_cache()
            continue
        times[length] = seconds
        previous = (length, seconds)
        print(f"  {arch} L={length}: {seconds:.3f} s", file=sys.stderr)
    return times


# --- the race against the official HyenaDNA code ---------------------------------------------


def _stand_ins() -> None:
    """Minimal `einops.rearrange` and `torchvision.ops.StochasticDepth` for the official file's
    imports, when those packages are missing (it uses four patterns and drop-path 0)."""
    import importlib.machinery
    import importlib.util
    import types

    import transformers.tokenization_utils  # noqa: F401  (imported before the stand-ins)
    from torch import nn

    if importlib.util.find_spec("einops") is None:
        einops = types.ModuleType("einops")
        einops.__spec__ = importlib.machinery.ModuleSpec("einops", None)

        def rearrange(x, pattern: str, **axes):
            if pattern in ("b l d -> b d l", "b d l -> b l d"):
                return x.transpose(-1, -2)
            if pattern == "l (o d) -> o d l":
                return x.reshape(x.shape[0], axes["o"], -1).permute(1, 2, 0)
            if pattern == "(o d) -> o d":
                return x.reshape(axes["o"], -1)
            raise NotImplementedError(f"rearrange stand-in: {pattern}")

        einops.rearrange = rearrange
        sys.modules["einops"] = einops
    if importlib.util.find_spec("torchvision") is None:

        class StochasticDepth(nn.Module):
            def __init__(self, p: float, mode: str):
                super().__init__()
                if p:
                    raise NotImplementedError("StochasticDepth stand-in: p must be 0")

            def forward(self, x):
                return x

        for name in ("torchvision", "torchvision.ops"):
            module = types.ModuleType(name)
            module.__spec__ = importlib.machinery.ModuleSpec(name, None)
            sys.modules[name] = module
        sys.modules["torchvision.ops"].StochasticDepth = StochasticDepth
        sys.modules["torchvision"].ops = sys.modules["torchvision.ops"]


def official_lm(path: Path, size: str, seq_len: int):
    """The official HyenaDNA backbone at a named size with a tied LM head; returns a callable
    `(input_ids) -> loss` and the module."""
    import importlib.util

    import torch
    import torch.nn.functional as F
    from torch import nn

    from dnalm.model_sizes import MODEL_SIZES

    _stand_ins()
    spec = importlib.util.spec_from_file_location("standalone_hyenadna", path)
    official = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(official)
    shape = MODEL_SIZES["hyena"][size]
    layer = {
        "_name_": "hyena",
        "emb_dim": 5,
        "filter_order": 64,
        "short_filter_order": 3,
        "l_max": seq_len,
        "modulate": True,
        "w": 10,
        "lr": 6e-4,
        "wd": 0.0,
        "lr_pos_emb": 0.0,
    }
    backbone = official.HyenaDNAModel(
        d_model=shape["d_model"],
        n_layer=shape["n_layer"],
        d_inner=shape["d_inner"],
        vocab_size=12,
        layer=layer,
        resid_dropout=0.0,
        embed_dropout=0.0,
        pad_vocab_size_multiple=8,
        use_head=False,
    )
    embeddings = backbone.backbone.embeddings.word_embeddings
    head = nn.Linear(shape["d_model"], embeddings.weight.shape[0], bias=False)
    head.weight = embeddings.weight
    module = nn.ModuleDict({"model": backbone, "lm_head": head})

    def loss(input_ids: torch.Tensor) -> torch.Tensor:
        logits = head(backbone(input_ids)).float()
        return F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1)
        )

    return loss, module


def contestants(args, device, names: tuple[str, ...]) -> dict:
    """name -> (loss function of input ids, AdamW optimizer, parameter count)."""
    import torch

    torch.manual_seed(0)
    built = {}
    for name in names:
        if name == "official":
            loss, module = official_lm(args.reference, args.race_size, args.seq_len)
        else:
            arch = "hyena" if name == "dnalm" else "gpt"
            module, _ = build(arch, args.race_size, args.seq_len, device, False)

            def loss(x, module=module):
                return module(input_ids=x, labels=x).loss

        from dnalm.models import count_parameters

        kwargs = {"foreach": True} if args.optimizer == "foreach" else {}
        if args.optimizer == "fused":
            kwargs = {"fused": True}
        optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4, **kwargs)
        module.train()
        built[name] = (loss, optimizer, count_parameters(module))
    return built


def _stepper(models: dict, x):
    def step(name: str) -> None:
        loss, optimizer, _ = models[name]
        value = loss(x)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()

    return step


def race(args, device) -> dict:
    """One thread count: dnalm hyena, official HyenaDNA and gpt, steps alternating (gpt only up
    to 4,096 tokens, where attention is still affordable)."""
    import torch

    names = ("dnalm", "official", "gpt") if args.seq_len <= 4096 else ("dnalm", "official")
    models = contestants(args, device, names)
    x = torch.randint(7, 11, (args.batch, args.seq_len), device=device)
    step = _stepper(models, x)
    wall = dict.fromkeys(models, math.inf)
    cpu = dict.fromkeys(models, math.inf)
    for name in models:
        step(name)
    for _ in range(args.repeats):
        for name in models:
            start, start_cpu = time.perf_counter(), time.process_time()
            step(name)
            wall[name] = min(wall[name], time.perf_counter() - start)
            cpu[name] = min(cpu[name], time.process_time() - start_cpu)
    tokens = args.batch * args.seq_len
    return {
        "threads": args.threads,
        "load": os.getloadavg()[0],
        **{
            name: {
                "params": models[name][2],
                "tok_s": tokens / wall[name],
                "cpu_tok_s": tokens / cpu[name],
            }
            for name in models
        },
    }


def race_table(rows: list[dict], args) -> str:
    lines = [
        f"Training steps, {args.race_size}, batch {args.batch} x {args.seq_len} tokens, AdamW "
        f"({args.optimizer}); the fastest of {args.repeats} alternating steps each. CPU-time "
        "tokens/s divide by the process's CPU seconds (all threads).",
        "",
        "| threads | load | dnalm tokens/s | official tokens/s | dnalm / official | "
        "by CPU time | gpt tokens/s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        d, o = r["dnalm"], r["official"]
        gpt = f"{r['gpt']['tok_s']:,.0f}" if "gpt" in r else "-"
        lines.append(
            f"| {r['threads']} | {r['load']:.1f} | {d['tok_s']:,.0f} | {o['tok_s']:,.0f} | "
            f"{d['tok_s'] / o['tok_s']:.2f}x | {d['cpu_tok_s'] / o['cpu_tok_s']:.2f}x | {gpt} |"
        )
    first = rows[0]
    counts = ", ".join(
        f"{n} {first[n]['params']:,}" for n in ("dnalm", "official", "gpt") if n in first
    )
    lines += ["", f"Parameters: {counts}."]
    return "\n".join(lines)


def profile(args, device) -> dict:
    """Self CPU time of a training step by op category (the step with the least total of
    `--repeats`), for dnalm's hyena and, with `--reference`, the official code, alternating."""
    import collections

    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    names = ("dnalm", "official") if args.reference else ("dnalm",)
    models = contestants(args, device, names)
    x = torch.randint(7, 11, (args.batch, args.seq_len), device=device)
    step = _stepper(models, x)
    best: dict = {}
    for name in names:
        step(name)
    for _ in range(args.repeats):
        for name in names:
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                step(name)
            ops = collections.Counter()
            for event in prof.key_averages():
                ops[event.key.split("::")[-1]] += event.self_cpu_time_total / 1e3
            total = sum(ops.values())
            if total < best.get(name, {}).get("total_ms", math.inf):
                best[name] = {"total_ms": total, "ops": dict(ops)}
    return {"threads": args.threads, "load": os.getloadavg()[0], **best}


def profile_table(result: dict, args, top: int = 12) -> str:
    names = [n for n in ("dnalm", "official") if n in result]
    lines = [
        f"Self CPU time of one training step ({args.race_size}, batch {args.batch} x "
        f"{args.seq_len}, {result['threads']} thread(s), load {result['load']:.1f}; torch.profiler,"
        " the step with the least total of the repeats), the top ops of each.",
        "",
        "| rank | " + " | ".join(f"{n} op | self CPU % | ms" for n in names) + " |",
        "|---:|" + "---|---:|---:|" * len(names),
    ]
    ranked = {n: sorted(result[n]["ops"].items(), key=lambda kv: -kv[1]) for n in names}
    for rank in range(top):
        cells = []
        for name in names:
            total = result[name]["total_ms"]
            if rank < len(ranked[name]):
                op, ms = ranked[name][rank]
                cells.append(f"{op} | {100 * ms / total:.1f}% | {ms:,.0f}")
            else:
                cells.append(" | | ")
        lines.append(f"| {rank + 1} | " + " | ".join(cells) + " |")
    totals = " | ".join(f"all ops | 100% | {result[n]['total_ms']:,.0f}" for n in names)
    lines.append(f"| | {totals} |")
    return "\n".join(lines)


def race_in_fresh_process(threads: int, argv: list[str] | None) -> dict:
    """One race row in a new Python process: threads must be set before torch starts."""
    base = sys.argv[1:] if argv is None else argv
    command = [sys.executable, __file__, *base, "--race", "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"the race at {threads} thread(s) failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- report -----------------------------------------------------------------------------------


def fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def fmt_time(x: float | None) -> str:
    if x is None:
        return "skipped"
    return f"{x * 1000:,.0f} ms" if x < 10 else f"{x:,.1f} s"


def throughput_table(rows: list[dict], args) -> str:
    lines = [
        f"Batch {args.batch} x {args.seq_len} tokens; training = forward + backward + AdamW.",
        "",
        "| arch | size | parameters | train tokens/s | inference tokens/s | train peak MiB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        peak = "-" if r["train_peak_mib"] is None else f"{r['train_peak_mib']:,.0f}"
        lines.append(
            f"| {r['arch']} | {r['size']} | {r['params']:,} | {fmt_rate(r['train_tok_s'])} | "
            f"{fmt_rate(r['infer_tok_s'])} | {peak} |"
        )
    return "\n".join(lines)


def scaling_table(results: dict[str, dict[int, float | None]], args) -> str:
    lines = [
        f"One sequence, forward + backward, size {args.scaling_size}.",
        "",
        "| length | hyena | gpt | gpt / hyena |",
        "|---:|---:|---:|---:|",
    ]
    for length in results["hyena"]:
        h, g = results["hyena"].get(length), results["gpt"].get(length)
        ratio = f"{g / h:.2f}x" if g and h else "-"
        lines.append(f"| {length:,} | {fmt_time(h)} | {fmt_time(g)} | {ratio} |")
    return "\n".join(lines)


def in_fresh_process(arch: str, size: str, argv: list[str] | None) -> dict:
    """One throughput row, measured in a new Python process (clean memory high-water mark)."""
    command = [sys.executable, __file__, *(sys.argv[1:] if argv is None else argv)]
    command += ["--one", arch, size]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"measuring {arch} {size} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from dnalm.runtime import limit_threads, pick_device

    limit_threads(args.threads)
    import torch

    device = pick_device(args.device)
    if args.one:
        print(json.dumps(throughput(*args.one, args, device)))
        return
    if args.race:
        print(json.dumps(race(args, device)))
        return
    if args.profile:
        result = profile(args, device)
        print(profile_table(result, args))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return
    if args.reference:
        rows = []
        for threads in (int(t) for t in args.race_threads.split(",")):
            print(f"  race, {threads} thread(s) ...", file=sys.stderr)
            rows.append(race_in_fresh_process(threads, argv))
        print(f"# dnalm vs official HyenaDNA: torch {torch.__version__}, CPU\n")
        print(race_table(rows, args))
        if args.json:
            payload = {"race": rows, "args": vars(args) | {"json": None}}
            args.json.write_text(json.dumps(payload, indent=2, default=str))
        return
    if args.lengths:
        lengths = [int(x) for x in args.lengths.split(",")]
    else:
        lengths = GPU_LENGTHS if device.type == "cuda" else CPU_LENGTHS
        if args.quick and device.type != "cuda":
            lengths = [n for n in lengths if n <= 16384]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"# model speed: torch {torch.__version__}, {where}, {args.threads} thread(s), "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )

    rows = []
    for size in args.sizes.split(","):
        for arch in args.archs.split(","):
            print(f"  throughput {arch} {size} ...", file=sys.stderr)
            rows.append(in_fresh_process(arch, size, argv))
    print(throughput_table(rows, args) + "\n")

    scaled = {arch: scaling(arch, lengths, args, device) for arch in ("hyena", "gpt")}
    print(scaling_table(scaled, args))
    if args.json:
        payload = {"throughput": rows, "scaling": scaled, "args": vars(args) | {"json": None}}
        args.json.write_text(json.dumps(payload, indent=2, default=str))


if __name__ == "__main__":
    main()
