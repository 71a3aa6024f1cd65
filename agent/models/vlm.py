"""An in-process vision-language model (transformers), loaded once per process, and its grounding checks.

`load_vlm(path, device, dtype)` loads a model FOLDER (never a hub id: `local_files_only=True`,
HF_HUB_OFFLINE) with `AutoModelForImageTextToText` + `AutoProcessor` and the model's own chat
template; `LocalVLM.generate` renders a conversation, passes its images through the processor
and decodes greedily. torch/transformers are imported only here, only when a model is loaded.
The grounding checks of what such a model writes are in perception/describe/grounding.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geodelta.errors import ConfigError, InputError, MissingDependencyError, ModelError
from geodelta.perception.io.checksum import file_sha256
from geodelta.perception.learned.device import resolve_device

DEFAULT_MAX_NEW_TOKENS = 512  # a plan step is one tool call (< 200 tokens); captions < 150 tokens
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_CONFIG_SUFFIXES = (".json", ".jinja", ".model", ".txt")  # configs, tokenizer, chat template
_INSTALL_HINT = "install the [vlm] extra (pip install 'geodelta[vlm]') or use --backend embedded"
_DOWNLOAD_HINT = (
    "set GEODELTA_VLM_PATH to a folder holding a downloaded model, e.g. "
    "`huggingface-cli download Qwen/Qwen2.5-VL-3B-Instruct --local-dir ~/models/qwen2.5-vl-3b`"
)


# --- model folder ------------------------------------------------------------------------------


def check_model_folder(path: str | Path | None) -> Path:
    """The model folder as an absolute path; `ConfigError` when unset, missing or without config.json."""
    if path is None or str(path).strip() == "":
        raise ConfigError(f"The local backend needs a model folder: {_DOWNLOAD_HINT}.")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        hub = "/" in str(path) and not str(path).startswith(("/", ".", "~"))
        why = " (it looks like a hub id; models are never downloaded at run time)" if hub else ""
        raise ConfigError(f"The model folder {folder} does not exist{why}: {_DOWNLOAD_HINT}.")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{folder} holds no config.json, so it is not a transformers model folder: {_DOWNLOAD_HINT}.")
    return folder.resolve()


_HASH_CACHE: dict[tuple, tuple[str, str]] = {}


def folder_hashes(path: str | Path) -> tuple[str, str]:
    """(config_sha256, weights_sha256) of a model folder's top-level files, for the audit trail.

    Each is sha256 over sorted "name sha256" lines of the config-like files (json, chat template,
    tokenizer) or the weight files. Weights of a 3B model take ~10 s to hash, so the result is
    cached per process, keyed by the files' names, sizes and modification times.
    """
    folder = check_model_folder(path)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    key = (str(folder), tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if key not in _HASH_CACHE:
        def digest(suffixes: tuple[str, ...]) -> str:
            lines = [f"{p.name} {file_sha256(p)}\n" for p in files if p.name.endswith(suffixes)]
            return hashlib.sha256("".join(lines).encode()).hexdigest()

        _HASH_CACHE[key] = (digest(_CONFIG_SUFFIXES), digest(_WEIGHT_SUFFIXES))
    return _HASH_CACHE[key]


# --- images ------------------------------------------------------------------------------------


def load_image(ref: Any) -> Any:
    """A PIL RGB image from a PIL image, a `data:image/...;base64,` URL or a file path."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(ref, Image.Image):
        return ref.convert("RGB")
    text = str(ref)
    try:
        if text.startswith("data:"):
            data = base64.b64decode(text.split(",", 1)[1])
            return Image.open(io.BytesIO(data)).convert("RGB")
        with Image.open(Path(text.removeprefix("file://")).expanduser()) as img:
            return img.convert("RGB")
    except (OSError, ValueError, IndexError, UnidentifiedImageError) as exc:
        raise InputError(f"Cannot read the image {text[:80]!r} for the local model ({exc}): give a PNG/JPEG file or data URL.") from exc


# --- the model ---------------------------------------------------------------------------------


def resolve_dtype(dtype: str, device: str) -> Any:
    """'auto' -> bfloat16 on a GPU that supports it, float32 on CPU (half precision is slow there)."""
    import torch

    if dtype == "auto":
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise ConfigError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16.") from None


@dataclass
class LocalVLM:
    """A loaded model + processor. `generate` is serialised by a lock (one forward pass at a time)."""

    path: Path
    device: str
    dtype: Any
    model: Any
    processor: Any
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    def control_tokens(self) -> list[str]:
        """Special tokens (chat markers, image placeholders) that untrusted text must not contain."""
        tok = self.tokenizer
        specials = set(getattr(tok, "all_special_tokens", []) or [])
        for added in (getattr(tok, "added_tokens_decoder", {}) or {}).values():
            if getattr(added, "special", False):
                specials.add(str(added))
        return sorted((t for t in specials if len(t) > 1), key=len, reverse=True)

    def inputs(self, conversation: list[dict[str, Any]], images: Sequence[Any] = ()) -> Any:
        """The processor's tensors for a chat-template conversation; `images` fill its image parts in order."""
        prompt = self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        pil = [load_image(i) for i in images]
        kwargs: dict[str, Any] = {"text": [prompt], "return_tensors": "pt"}
        if pil:
            kwargs["images"] = pil
        return self.processor(**kwargs)

    def generate(self, conversation: list[dict[str, Any]], images: Sequence[Any] = (), *,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, **generate_kwargs: Any) -> str:
        """The model's reply text (greedy unless `generate_kwargs` say otherwise; special tokens removed)."""
        import torch

        batch = self.inputs(conversation, images).to(self.model.device)
        if "pixel_values" in batch:
            batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
        opts = {"max_new_tokens": max_new_tokens, "do_sample": False, **generate_kwargs}
        with self.lock, torch.inference_mode():
            try:
                out = self.model.generate(**batch, **opts)
            except torch.OutOfMemoryError as exc:
                raise ModelError(f"The local model ran out of GPU memory ({exc}): use a smaller model, "
                                 "GEODELTA_DEVICE=cpu, or smaller images.") from exc
        new = out[:, batch["input_ids"].shape[1]:]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)[0].strip()

    def complete(self, text: str, images: Sequence[Any] = (), *, system: str | None = None, **kwargs: Any) -> str:
        """One user turn (images first, then the text) -> the reply text."""
        conv: list[dict[str, Any]] = []
        if system:
            conv.append({"role": "system", "content": [{"type": "text", "text": system}]})
        conv.append({"role": "user", "content": [*({"type": "image"} for _ in images), {"type": "text", "text": text}]})
        return self.generate(conv, images, **kwargs)


_CACHE: dict[tuple[str, str, str], LocalVLM] = {}
_CACHE_LOCK = threading.Lock()


def load_vlm(path: str | Path | None, device: str = "auto", dtype: str = "auto") -> LocalVLM:
    """The model in folder `path` on `device`; loaded once per process per (path, device, dtype).

    Never downloads (local_files_only, HF_HUB_OFFLINE) and never runs code from the folder
    (trust_remote_code=False). A missing torch/transformers is a ConfigError naming the extra.
    """
    folder = check_model_folder(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces besides local_files_only
    try:
        import torch  # noqa: F401
        from transformers import AutoModelForImageTextToText, AutoProcessor
    except ImportError as exc:
        raise MissingDependencyError(f"The local backend needs torch and transformers ({exc}): {_INSTALL_HINT}.") from None
    dev = resolve_device(device)
    key = (str(folder), dev, str(dtype))
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        torch_dtype = resolve_dtype(dtype, dev)
        try:
            processor = AutoProcessor.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
            model = AutoModelForImageTextToText.from_pretrained(
                folder, dtype=torch_dtype, local_files_only=True, trust_remote_code=False
            ).to(dev)  # type: ignore[arg-type]  # transformers' wrapped .to() hint wants a model, takes a device
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"Cannot load the model in {folder} with transformers ({type(exc).__name__}: {exc}): "
                              "check it is a complete image-text-to-text model folder (config, weights, processor, "
                              f"tokenizer) of an architecture transformers supports, or {_INSTALL_HINT}.") from exc
        model.eval()
        gen = model.generation_config
        if gen.pad_token_id is None:
            gen.pad_token_id = getattr(processor.tokenizer, "pad_token_id", None) or gen.eos_token_id
        if getattr(processor, "chat_template", None) is None and getattr(processor.tokenizer, "chat_template", None) is None:
            raise ConfigError(f"The model in {folder} has no chat template (chat_template.jinja/json): use an "
                              "instruction-tuned model folder.")
        _CACHE[key] = LocalVLM(folder, dev, torch_dtype, model, processor)
        return _CACHE[key]
