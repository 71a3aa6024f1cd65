"""The OpenAI-compatible backend: any vLLM, Ollama or llama.cpp server through `langchain-openai`.

`make_openai_model` builds the chat model from settings; `call_model` turns transport failures
(server down, timeout, HTTP errors, unknown model) into a `ModelError` that says what to do;
`vision_message` / `image_part` send thumbnails, overlays and region chips as image parts;
`classify_chips` asks a vision model for the before/after land-cover class of region chips.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from geodelta.contracts import VOCABULARY, LandCover
from geodelta.errors import InputError, ModelError
from geodelta.settings import Settings

log = logging.getLogger(__name__)

_EMBEDDED_HINT = "or use --backend embedded"


def make_openai_model(settings: Settings) -> BaseChatModel:
    """A `ChatOpenAI` on the chat-completions API of the server at `settings.openai_base_url`.

    temperature 0 keeps plans repeatable; `use_responses_api=False` because local servers
    (vLLM, Ollama, llama.cpp) speak chat completions, not the Responses API.
    """
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key,
        model=settings.openai_model,
        timeout=settings.openai_timeout_s,
        max_retries=settings.openai_max_retries,
        use_responses_api=False,
        temperature=0,
    )


# --- images ------------------------------------------------------------------------------------


def image_part(png_path: Path, max_size: int = 768) -> dict[str, Any]:
    """An OpenAI `image_url` content part: the image as an RGB PNG data URL, longest edge <= max_size px.

    Any format Pillow reads is accepted; the aspect ratio is kept and small images are not enlarged.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(png_path)
    try:
        with Image.open(path) as src:
            img = src.convert("RGB")
            img.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            img.save(buf, format="PNG", optimize=True)
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"Cannot read image {path} to send to the model ({exc}): give a PNG/JPEG file.") from exc
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}


def vision_message(text: str, images: Sequence[Path], max_size: int = 768) -> HumanMessage:
    """A user message with the text first, then one image part per path (thumbnails, overlay, chips)."""
    parts: list[str | dict[Any, Any]] = [{"type": "text", "text": text}]
    parts.extend(image_part(p, max_size=max_size) for p in images)
    return HumanMessage(content=parts)


# --- calling the server ------------------------------------------------------------------------


def _chat_openai(model: Any) -> Any | None:
    """The `ChatOpenAI` inside a model or a `bind_tools` binding (None for other backends)."""
    seen = 0
    while model is not None and seen < 5:
        if hasattr(model, "openai_api_base"):
            return model
        model = getattr(model, "bound", None)
        seen += 1
    return None


def _server_message(exc: Any) -> str:
    """The server's own error text from an `openai.APIStatusError` ("error": {"message": ...})."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return str(getattr(exc, "message", "") or exc)


def transport_error(exc: BaseException, model: Any) -> ModelError | None:
    """A `ModelError` telling the user what to do, or None when `exc` is not a transport failure.

    Only `openai` client errors are converted; anything else is a bug and keeps its traceback.
    """
    openai = sys.modules.get("openai")  # not imported -> cannot be an openai error
    if openai is None or not isinstance(exc, openai.OpenAIError):
        return None
    chat = _chat_openai(model)
    base_url = str(getattr(chat, "openai_api_base", None) or "the configured base URL")
    name = getattr(chat, "model_name", None) or "the configured model"
    timeout = getattr(chat, "request_timeout", None)
    if isinstance(exc, openai.APITimeoutError):
        return ModelError(
            f"The model server at {base_url} did not answer within {timeout:g} s: check it is running and the "
            f"model '{name}' is loaded (a first load can be slow), raise GEODELTA_OPENAI_TIMEOUT_S, {_EMBEDDED_HINT}."
            if isinstance(timeout, (int, float))
            else f"The model server at {base_url} did not answer in time: raise GEODELTA_OPENAI_TIMEOUT_S, "
            f"{_EMBEDDED_HINT}."
        )
    if isinstance(exc, openai.APIConnectionError):
        return ModelError(
            f"No model server answers at {base_url}: start it (e.g. `ollama serve`), check GEODELTA_OPENAI_BASE_URL, "
            f"{_EMBEDDED_HINT}."
        )
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        said = _server_message(exc)
        if code == 404:
            return ModelError(
                f"The model server at {base_url} returned HTTP 404 for model '{name}' ({said}): serve or pull it "
                f"(e.g. `ollama pull {name}`), set GEODELTA_OPENAI_MODEL to a served model (GET {base_url.rstrip('/')}"
                f"/models lists them), check the base URL ends in /v1, {_EMBEDDED_HINT}."
            )
        if code in (401, 403):
            return ModelError(
                f"The model server at {base_url} refused the API key (HTTP {code}: {said}): "
                "set GEODELTA_OPENAI_API_KEY."
            )
        if code == 400:
            return ModelError(
                f"The model server at {base_url} rejected the request (HTTP 400: {said}): if it mentions tools, "
                "the model or server lacks tool calling (vLLM needs --enable-auto-tool-choice --tool-call-parser, "
                "llama-server needs --jinja); if it mentions images, the model has no vision (unset GEODELTA_VISION), "
                f"{_EMBEDDED_HINT}."
            )
        if code >= 500:
            return ModelError(
                f"The model server at {base_url} returned HTTP {code} ({said}): check the server's log (out of memory? "
                f"model crashed?), retry, {_EMBEDDED_HINT}."
            )
        return ModelError(
            f"The model server at {base_url} returned HTTP {code} ({said}): check the server's log, {_EMBEDDED_HINT}."
        )
    return ModelError(f"The model client failed talking to {base_url} ({type(exc).__name__}: {exc}), {_EMBEDDED_HINT}.")


def call_model(model: Any, messages: Sequence[BaseMessage]) -> AIMessage:
    """`model.invoke(messages)`, with transport failures raised as an actionable `ModelError`.

    Works for any chat model (or `bind_tools` binding); only `openai` client errors are converted.
    """
    try:
        reply = model.invoke(list(messages))
    except Exception as exc:
        err = transport_error(exc, model)
        if err is None:
            raise
        raise err from exc
    if not isinstance(reply, AIMessage):
        raise ModelError(f"The model returned a {type(reply).__name__}, not a chat reply: use a chat model.")
    return reply


def served_models(settings: Settings) -> list[str]:
    """The model ids the server lists (GET /models); raises `ModelError` when the configured one is absent.

    Ollama lists 'name:latest' for 'name', so that counts as a match.
    """
    import openai

    client = openai.OpenAI(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key,
        timeout=settings.openai_timeout_s,
        max_retries=settings.openai_max_retries,
    )
    try:
        ids = [m.id for m in client.models.list()]
    except openai.OpenAIError as exc:
        raise transport_error(exc, make_openai_model(settings)) from exc  # type: ignore[misc]
    wanted = settings.openai_model
    if wanted not in ids and f"{wanted}:latest" not in ids:
        raise ModelError(
            f"The model server at {settings.openai_base_url} does not serve '{wanted}' (it serves: "
            f"{', '.join(ids) or 'nothing'}): set GEODELTA_OPENAI_MODEL to one of them, or load the model."
        )
    return ids


# --- region chip classification --------------------------------------------------------------

_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


class ChipClasses(BaseModel):
    """The reply `classify_chips` accepts: one vocabulary class per date."""

    model_config = ConfigDict(extra="ignore")

    before: LandCover
    after: LandCover

    @field_validator("before", "after", mode="before")
    @classmethod
    def _normalise(cls, v: Any) -> Any:
        # "Low vegetation" / "built-up" -> vocabulary spelling; anything else is left to fail.
        return re.sub(r"[\s\-]+", "_", v.strip().lower()) if isinstance(v, str) else v


def message_text(message: BaseMessage) -> str:
    """The text of a reply whose content is a string or a list of content blocks."""
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(b if isinstance(b, str) else str(b.get("text", "")) for b in content if isinstance(b, (str, dict)))


def parse_chip_reply(text: str) -> ChipClasses:
    """The first JSON object in `text` (code fences and chatter around it are tolerated), validated.

    Raises ValueError (json) or ValidationError (a class outside the vocabulary, a missing key).
    """
    found = _JSON_OBJECT.search(text)
    if found is None:
        raise ValueError("no JSON object in the reply")
    return ChipClasses.model_validate(json.loads(found.group(0)))


def classify_chips(
    model: Any,
    chips: Sequence[tuple[Path, Path]],
    notes: list[str] | None = None,
    max_size: int = 256,
) -> list[tuple[str, str]]:
    """(before, after) vocabulary classes per region chip pair, one request per pair.

    A reply that is not JSON or names a class outside the vocabulary gives ("unknown", "unknown")
    and a line in `notes` (the answer must say those classes were not determined). Transport
    failures raise `ModelError`.
    """
    from geodelta.prompts import load_prompt  # the prompt file is shared by every backend

    prompt = load_prompt("classify_region", vocabulary=", ".join(VOCABULARY))
    out: list[tuple[str, str]] = []
    for i, (before, after) in enumerate(chips):
        reply = call_model(model, [vision_message(prompt, [before, after], max_size=max_size)])
        text = message_text(reply)
        try:
            parsed = parse_chip_reply(text)
        except (ValueError, ValidationError) as exc:
            detail = str(exc).splitlines()[0] if not isinstance(exc, ValidationError) else _validation_summary(exc)
            note = f"chip {i}: the model's reply {text[:120]!r} is not usable ({detail}); classes set to unknown"
            log.warning(note)
            if notes is not None:
                notes.append(note)
            out.append(("unknown", "unknown"))
            continue
        out.append((parsed.before, parsed.after))
    return out


def _validation_summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'reply'}: {e['msg']}" for e in exc.errors(include_url=False)
    )
