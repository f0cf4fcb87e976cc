"""The ``distilbert`` command.

Subcommands: ``info`` (what a checkpoint directory holds) and ``convert`` (between formats). Bad
input gives one line on standard error and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from distilbert.common.files import CheckpointError

EXIT_USAGE = 2


class CommandError(Exception):
    """A user error: printed as one line, exit code 2."""


def _cmd_info(args) -> int:
    from distilbert.common.checkpoint import available_formats, open_native
    from distilbert.common.config import DistilBertConfig
    from distilbert.common.hub import resolve_dir
    from distilbert.common.names import TASK_CLASSES

    directory = resolve_dir(args.model)
    config = DistilBertConfig.from_pretrained(directory)
    formats = available_formats(directory)
    result = {"directory": directory, "config": config.to_dict(), "formats": formats, "files": {}}
    for fmt in formats:
        from distilbert.common.checkpoint import FORMATS

        native, naming, task, table = open_native(os.path.join(directory, FORMATS[fmt][0]), config, fmt)
        with native:
            tensors = {name: {"shape": list(native.shape(name)), "dtype": str(native.dtype(name))} for name in native}
            result["files"][fmt] = {"task": task, "class": TASK_CLASSES[task], "tensors": tensors,
                                    "parameters": sum(_prod(native.shape(n)) for n in native
                                                      if not _is_tied_copy(n, table, naming)),
                                    "bytes": sum(native.nbytes(n) for n in native)}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    c = config
    print(f"{directory}")
    print(f"  config: {c.n_layers} layers, dim {c.dim}, {c.n_heads} heads, hidden_dim {c.hidden_dim}, "
          f"vocab {c.vocab_size}, max positions {c.max_position_embeddings}, activation {c.activation}"
          f"{', sinusoidal positions' if c.sinusoidal_pos_embds else ''}")
    if c.architectures:
        print(f"  architectures: {', '.join(c.architectures)}; labels: {c.num_labels} {list(c.id2label.values())}")
    for fmt, info in result["files"].items():
        print(f"  {fmt}: {info['class']}, {len(info['tensors'])} tensors, {info['parameters']:,} parameters, "
              f"{info['bytes'] / 2**20:.1f} MiB")
        if args.tensors:
            for name, t in info["tensors"].items():
                print(f"    {name:70s} {str(tuple(t['shape'])):>14s} {t['dtype']}")
    tokenizer = [f for f in ("vocab.txt", "tokenizer.json") if os.path.isfile(os.path.join(directory, f))]
    print(f"  tokenizer files: {', '.join(tokenizer) or 'none'}")
    return 0


def _prod(shape) -> int:
    out = 1
    for n in shape:
        out *= n
    return out


def _is_tied_copy(name, table, naming) -> bool:
    return any(s.kind == "tied" and s.names[naming] == name for s in table)


def _cmd_convert(args) -> int:
    from distilbert.common.convert import convert

    result = convert(args.src, args.dst, to=args.to, weight_format=args.format, source_format=args.source_format,
                     dtype=args.dtype, force=args.force, progress=not args.quiet,
                     max_shard_size=int(args.max_shard_size * 2**20) if args.max_shard_size else None)
    if args.verify:
        from distilbert.verify import verify

        report = verify(args.src, args.dst, atol=args.atol)
        for line in report.lines():
            print(line)
        if not report.ok:
            raise CommandError(f"verification failed: largest difference {report.max_diff:.3g} > {args.atol}")
    if not args.quiet:
        print(f"wrote {result.tensors} tensors of {result.task} from {os.path.basename(result.source)} "
              f"({result.source_format}) to {result.destination}: {', '.join(result.files)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distilbert", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    info = sub.add_parser("info", help="show a checkpoint directory's config, formats and tensors")
    info.add_argument("model", help="checkpoint directory or hub id")
    info.add_argument("--tensors", action="store_true", help="list every tensor")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=_cmd_info)

    conv = sub.add_parser("convert", help="convert a checkpoint to another framework's format")
    conv.add_argument("src", help="source checkpoint directory or hub id")
    conv.add_argument("dst", help="destination directory (must not exist unless --force)")
    conv.add_argument("--to", required=True, choices=["pt", "tf", "flax", "keras"], help="target framework")
    conv.add_argument("--format", help="pt: safetensors (default) or safetensors-sharded; "
                                       "keras: keras-weights (default, model.weights.h5) or keras (model.keras)")
    conv.add_argument("--source-format", help="which of the source's formats to read when it has several")
    conv.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="cast floating tensors")
    conv.add_argument("--max-shard-size", type=float, help="MiB per shard for safetensors-sharded")
    conv.add_argument("--force", action="store_true", help="replace an existing destination")
    conv.add_argument("--verify", action="store_true",
                      help="run source and converted models on random inputs and compare every output")
    conv.add_argument("--atol", type=float, default=1e-5, help="tolerance for --verify (default 1e-5)")
    conv.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    conv.set_defaults(run=_cmd_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (CommandError, CheckpointError, FileNotFoundError, FileExistsError, NotADirectoryError,
            ValueError, OSError, KeyError) as exc:
        message = str(exc).strip().splitlines()
        print(f"distilbert {args.command}: error: {' '.join(m.strip() for m in message)}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
