"""Resolving ``name_or_path`` the way ``from_pretrained`` does: a local directory first, else a hub id."""

from __future__ import annotations

import os

# What a DistilBERT repository may hold that we read; anything else on the hub is not fetched.
HUB_PATTERNS = [
    "config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model*.bin",  # also the shards: pytorch_model-00001-of-00002.bin
    "pytorch_model.bin.index.json",
    "tf_model*.h5",
    "tf_model.h5.index.json",
    "flax_model*.msgpack",
    "flax_model.msgpack.index.json",
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
]


def resolve_dir(name_or_path: str | os.PathLike, revision: str | None = None) -> str:
    """Returns a local directory for a path or a hub id (``org/name``), downloading if allowed.

    Hub ids go through ``huggingface_hub`` and its cache, so ``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE``
    work as usual. Failures say to pass a local directory.
    """
    path = os.fspath(name_or_path)
    if os.path.isdir(path):
        return path
    if os.path.exists(path):
        raise NotADirectoryError(f"{path!r} is a file; pass the checkpoint's directory")
    looks_like_id = path.count("/") <= 1 and not path.startswith((".", "/", "~")) and path.strip() != ""
    if not looks_like_id:
        raise FileNotFoundError(f"no directory {path!r}")
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id=path, revision=revision, allow_patterns=HUB_PATTERNS)
    except Exception as exc:  # offline, unknown repo, gated repo, network: one clear message
        raise OSError(
            f"{path!r} is not a local directory and could not be fetched from the Hugging Face hub "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Offline, pass a local directory holding config.json and the weights."
        ) from None


def resolve_file(name_or_path: str | os.PathLike, filename: str, revision: str | None = None) -> str:
    """The path of ``filename`` inside the resolved directory; a clear error if it is not there."""
    directory = resolve_dir(name_or_path, revision)
    path = os.path.join(directory, filename)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{filename} not found in {directory!r}")
    return path
