"""An in-process vision-language model (transformers), loaded once per process, and its grounding checks.

`load_vlm(path, device, dtype)` loads a model FOLDER (never a hub id: `local_files_only=True`,
HF_HUB_OFFLINE) with `AutoModelForImageTextToText` + `AutoProcessor` and the model's own chat
template; `LocalVLM.generate` renders a conversation, passes its images through the processor
and decodes greedily. torch/transformers are imported only here, only when a model is loaded.
Grounding (no model needed): `caption_from_quadruples` keeps a model caption only when every
number in it comes from the quadruples; `reconcile_classes` reports spectral vs model classes.
No LangChain here (perception never imports it): a "model" is anything with `complete(text)`
or a chat model's `invoke(text)`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geodelta.contracts import VOCABULARY, ChangeQuery, Quadruple
from geodelta.errors import ConfigError, InputError, MissingDependencyError, ModelError
from geodelta.perception.describe.caption import caption, format_area
from geodelta.perception.io.checksum import file_sha256
from geodelta.perception.learned.device import resolve_device
from geodelta.prompts import load_prompt

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


# --- grounding: captions -----------------------------------------------------------------------

_NUM = re.compile(r"\d[\d,]*(?:\.\d+)?")  # the same number pattern as agent/answer.check_rewording
_PROSE = re.compile(r"[A-Za-z0-9\s.,;:'()²%/\-]")
# Words that ground a caption on a class (LEVIR-CC and CCExpert wordings included).
_CLASS_WORDS = {
    "water": ("water", "river", "lake", "pond", "reservoir", "sea", "flood"),
    "tree": ("tree", "forest", "wood", "orchard"),
    "low_vegetation": ("grass", "vegetation", "shrub", "meadow", "park"),
    "cropland": ("farm", "crop", "field", "agricultur", "arable"),
    "bare_ground": ("bare", "soil", "sand", "construction", "cleared"),
    "built_up": ("built", "building", "house", "road", "urban", "street", "paved", "construct"),
    "other": ("other", "change"),
}


def numbers_in(text: str) -> list[str]:
    """The numbers written in `text`, thousands separators removed ('12,345 px' -> '12345')."""
    return [n.replace(",", "") for n in _NUM.findall(text)]


def _fact_lines(quads: Sequence[Quadruple], georeferenced: bool) -> list[str]:
    out = []
    for q in quads:
        area = format_area(q.total_area_m2 if georeferenced else None, q.total_area_px)
        out.append(f"- where: {q.where.sector}; what: {q.what.from_} -> {q.what.to}; how: {q.how}; "
                   f"how many regions: {q.how_many}; total area: {area}")
    return out


def caption_problem(text: str, quads: Sequence[Quadruple], allowed_text: str) -> str | None:
    """Why a model caption cannot be used (None when it can): a number not in `allowed_text`, not prose,
    or no word that names a changed class or a sector of the quadruples."""
    if not text.strip() or len(text) > 800:
        return "empty or longer than 800 characters"
    if sum(bool(_PROSE.match(c)) for c in text) < 0.95 * len(text) or len(re.findall(r"[A-Za-z]{2,}", text)) < 3:
        return "not plain prose"
    extra = sorted(set(numbers_in(text)) - set(numbers_in(allowed_text)))
    if extra:
        return f"numbers not in the quadruples: {', '.join(extra)}"
    low = text.lower()
    words = {w for q in quads for c in (q.what.from_, q.what.to) for w in _CLASS_WORDS.get(c, ())}
    words |= {q.where.sector for q in quads} | {"north", "south", "east", "west", "centre", "center", "top", "bottom", "left", "right", "middle"}
    if not any(w in low for w in words):
        return "it names no changed class and no place of the quadruples"
    return None


def _ask(model: Any, text: str) -> str:
    """Reply text from a `LocalVLM`-like `complete(text)` or a chat model's `invoke(text)`."""
    if hasattr(model, "complete"):
        return str(model.complete(text))
    reply = model.invoke(text)
    content = getattr(reply, "content", reply)
    if isinstance(content, list):
        content = "".join(c if isinstance(c, str) else str(c.get("text", "")) for c in content if isinstance(c, (str, dict)))
    return str(content)


def caption_from_quadruples(model: Any, quadruples: Sequence[Quadruple | dict[str, Any]], *, georeferenced: bool = True,
                            query: ChangeQuery | None = None, notes: list[str] | None = None) -> str:
    """A model-written change caption (CCExpert style) grounded on the S2M quadruples, else the template.

    The model sees the quadruples and the template caption; its caption is kept only when every
    number in it appears in them and it names a changed class or place (`caption_problem`);
    otherwise the template caption is returned and the reason goes to `notes`.
    """
    quads = [q if isinstance(q, Quadruple) else Quadruple.model_validate(q) for q in quadruples]
    template = caption(quads, georeferenced=georeferenced, query=query)
    if not quads:
        return template
    facts = "\n".join(_fact_lines(quads, georeferenced))
    try:
        text = _ask(model, load_prompt("caption", quadruples=facts, template=template))
    except ModelError as exc:
        if notes is not None:
            notes.append(f"the model caption failed ({exc}); the template caption is used")
        return template
    text = re.sub(r"^```\w*|```$", "", text.strip()).strip().strip('"').strip()
    problem = caption_problem(text, quads, facts + "\n" + template)
    if problem is not None:
        if notes is not None:
            notes.append(f"the model caption {text[:120]!r} was not used ({problem}); the template caption is used")
        return template
    return text


# --- grounding: region classes -----------------------------------------------------------------


def reconcile_classes(spectral: Sequence[tuple[str, str]], model: Sequence[tuple[str, str]],
                      region_ids: Sequence[int] | None = None) -> tuple[list[tuple[str, str]], list[str]]:
    """The classes used per region and one note per disagreement (the answer reports both).

    The spectral classes are used (numbers come from tools; the model is a second opinion,
    ViLaCD-R1 / ReasonCD style) except where the spectral side is 'unknown' and the model named
    a vocabulary class; each note says both readings and which was used.
    """
    if len(spectral) != len(model):
        raise ValueError(f"{len(spectral)} spectral class pairs but {len(model)} model pairs")
    ids = list(region_ids) if region_ids is not None else list(range(len(spectral)))
    used: list[tuple[str, str]] = []
    notes: list[str] = []
    for rid, s, m in zip(ids, spectral, model, strict=True):
        pick = tuple(mv if sv == "unknown" and mv in VOCABULARY else sv for sv, mv in zip(s, m))
        used.append((pick[0], pick[1]))
        if tuple(s) != tuple(m) and "unknown" not in m:
            source = "spectral" if pick == tuple(s) else ("model" if pick == tuple(m) else "spectral where known, model elsewhere")
            notes.append(f"region {rid}: spectral classes {s[0]} -> {s[1]}, the vision model says {m[0]} -> {m[1]}; "
                         f"used the {source} classes {pick[0]} -> {pick[1]}")
    return used, notes

