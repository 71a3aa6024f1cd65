"""The `local` backend: a multimodal model folder run in process with transformers, as a LangChain chat model.

Qwen2.5-VL's and SmolVLM's chat templates ignore `tools=`, so the tool list goes into the system
prompt (`prompts/system.md`, Hermes/Qwen style) and the reply's `<tool_call>{...}</tool_call>`
blocks are parsed here (`parse_tool_reply`). Tool results go back as `<tool_response>` user turns,
so any chat template works. A reply that is neither a tool call nor an `ANSWER:` / `QUESTION:`
line is re-asked (bounded, `max_corrections`), then a `ModelError` (the graph may fall back to the
embedded planner); bad tool calls are corrected by `agent/toolcalls.with_corrections` as for every
backend. The model itself is `geodelta.agent.models.vlm.load_vlm` (cached per process).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages.tool import invalid_tool_call, tool_call
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from geodelta.agent.models.openai import call_model, classify_chips, message_text, vision_message  # noqa: F401  (classify_chips: one implementation for every backend)
from geodelta.agent.models.vlm import (
    DEFAULT_MAX_NEW_TOKENS,
    LocalVLM,
    check_model_folder,
    folder_hashes,
    load_vlm,
)
from geodelta.contracts import SECTORS, VOCABULARY
from geodelta.errors import ModelError
from geodelta.prompts import load_prompt

_TOOL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_NAME = re.compile(r'"name"\s*:\s*"([^"]+)"')
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")
ANSWER, QUESTION = "ANSWER:", "QUESTION:"
CORRECTION = (
    "Your last reply was neither a tool call nor a final line. Reply again with EITHER one or more tool calls, each "
    'as <tool_call>{"name": "<tool name>", "arguments": {...}}</tool_call>, OR one line starting with "ANSWER:" '
    '(all steps done) or "QUESTION:" (you need the user). Tools: {tools}.'
)


# --- reply parsing -----------------------------------------------------------------------------


def _call_json(raw: str) -> dict[str, Any]:
    """One tool call's JSON object: {"name", "arguments"} (also "parameters", or arguments as a JSON string)."""
    obj = json.loads(_FENCE.sub("", raw.strip()))
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise ValueError('the call is not a JSON object with a "name"')
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        args = json.loads(args)
    if not isinstance(args, dict):
        raise ValueError('"arguments" is not a JSON object')
    return {"name": obj["name"], "args": args}


def parse_tool_reply(text: str, *, first_id: int = 1) -> AIMessage:
    """An AIMessage from a model's raw reply: `<tool_call>` blocks -> tool_calls (or invalid_tool_calls when
    their JSON is broken), the rest -> content. A bare JSON object {"name", "arguments"} counts as one call.

    Ids are "call_<n>_<name>", n counting from `first_id` (deterministic, like the embedded planner).
    A `QUESTION:` line marks a clarifying question (additional_kwargs["geodelta_clarify"]).
    """
    blocks = _TOOL_BLOCK.findall(text)
    rest = _TOOL_BLOCK.sub("", text).strip()
    if not blocks and rest.startswith("{") and '"name"' in rest:
        try:
            _call_json(rest)
            blocks, rest = [rest], ""
        except ValueError:
            pass
    calls, invalid = [], []
    for i, raw in enumerate(blocks):
        n = first_id + i
        try:
            c = _call_json(raw)
            calls.append(tool_call(name=c["name"], args=c["args"], id=f"call_{n}_{c['name']}"))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            name = (_NAME.search(raw) or [None, ""])[1]
            invalid.append(invalid_tool_call(name=name, args=raw.strip()[:500], id=f"call_{n}_{name or 'unknown'}",
                                             error=f"{type(exc).__name__}: {exc}"))
    extra: dict[str, Any] = {}
    question = next((ln.strip()[len(QUESTION):].strip() for ln in rest.splitlines() if ln.strip().upper().startswith(QUESTION)), None)
    if question and not blocks:
        extra["geodelta_clarify"] = question
    return AIMessage(content=rest, tool_calls=calls, invalid_tool_calls=invalid, additional_kwargs=extra)


def is_final(message: AIMessage) -> bool:
    """True for a reply the graph can act on without tools: an ANSWER:/QUESTION: line (or the embedded 'done')."""
    text = message_text(message).strip()
    return text.lower() == "done" or any(ln.strip().upper().startswith((ANSWER, QUESTION)) for ln in text.splitlines())


# --- messages -> chat-template conversation ----------------------------------------------------


def _defang(text: str, control: Sequence[str]) -> str:
    """Untrusted text with chat-control tokens broken up (a zero-width space), so it cannot open a turn."""
    for tok in control:
        if tok in text:
            text = text.replace(tok, tok[0] + "\u200b" + tok[1:])
    return text


def _call_text(c: Mapping[str, Any]) -> str:
    return "<tool_call>\n" + json.dumps({"name": c["name"], "arguments": c.get("args") or {}}) + "\n</tool_call>"


def _image_ref(part: dict[str, Any]) -> Any | None:
    """The image of a content part: OpenAI `image_url` (url str or {url}), or {"type": "image", url|path|image}."""
    if part.get("type") == "image_url":
        url = part.get("image_url")
        return url.get("url") if isinstance(url, dict) else url
    if part.get("type") == "image":
        if part.get("base64"):
            return f"data:{part.get('mime_type', 'image/png')};base64,{part['base64']}"
        return part.get("url") or part.get("path") or part.get("image")
    return None


def to_conversation(messages: Sequence[BaseMessage], system: str, control: Sequence[str] = ()) -> tuple[list[dict[str, Any]], list[Any]]:
    """(conversation, images) for `processor.apply_chat_template`: roles system/user/assistant only,
    consecutive turns of one role merged, image parts as {"type": "image"} with the images in order.

    Tool results become `<tool_response>` user text; earlier tool calls become `<tool_call>` assistant text;
    the before/after paths a question names (additional_kwargs["geodelta"]) are written into its text.
    """
    conv: list[dict[str, Any]] = [{"role": "system", "content": [{"type": "text", "text": system}]}]
    images: list[Any] = []

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if conv[-1]["role"] == role:
            conv[-1]["content"].extend([{"type": "text", "text": "\n"}, *parts])
        else:
            conv.append({"role": role, "content": parts})

    for m in messages:
        if isinstance(m, SystemMessage):
            conv[0]["content"].append({"type": "text", "text": "\n\n" + message_text(m)})
        elif isinstance(m, ToolMessage):
            add("user", [{"type": "text", "text": f"<tool_response>\n{_defang(message_text(m), control)}\n</tool_response>"}])
        elif isinstance(m, AIMessage):
            text = "\n".join([message_text(m).strip(), *(_call_text(c) for c in m.tool_calls)]).strip()
            add("assistant", [{"type": "text", "text": text}])
        else:
            parts: list[dict[str, Any]] = []
            content = m.content if isinstance(m.content, list) else [m.content]
            for p in content:
                if isinstance(p, str):
                    parts.append({"type": "text", "text": _defang(p, control)})
                elif isinstance(p, dict) and (ref := _image_ref(p)) is not None:
                    images.append(ref)
                    parts.append({"type": "image"})
                elif isinstance(p, dict) and p.get("type") == "text":
                    parts.append({"type": "text", "text": _defang(str(p.get("text", "")), control)})
            g = m.additional_kwargs.get("geodelta") or {}
            named = [f"{k} image: {g[k]}" for k in ("before", "after") if g.get(k)]
            if len(g.get("images") or []) > 2:
                named.append("all images in date order: " + ", ".join(map(str, g["images"])))
            if named:
                parts.append({"type": "text", "text": "\n(" + "; ".join(named) + ")"})
            add("user", parts)
    return conv, images


def system_prompt(tools: Sequence[dict[str, Any]]) -> str:
    """prompts/system.md with the vocabulary, sectors and the tools as OpenAI function schemas, one JSON per line
    (the Qwen2.5 / Hermes layout)."""
    lines = "\n".join(json.dumps(t, separators=(", ", ": ")) for t in tools)
    return load_prompt("system", vocabulary=", ".join(VOCABULARY), sectors=", ".join(SECTORS), tools=lines)


# --- the chat model ----------------------------------------------------------------------------


class LocalChatModel(BaseChatModel):
    """A transformers vision-language model folder as a chat model with `bind_tools` (no server, no network)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    path: str
    device: str = "auto"
    dtype: str = "auto"
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    max_corrections: int = 2
    tools: tuple[dict[str, Any], ...] = ()
    generate_kwargs: dict[str, Any] = Field(default_factory=dict)  # passed to `model.generate` (sampling, processors)

    @property
    def _llm_type(self) -> str:
        return "geodelta-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"path": self.path, "device": self.device, "dtype": self.dtype, "max_new_tokens": self.max_new_tokens}

    @property
    def vlm(self) -> LocalVLM:
        """The loaded model (once per process per path, device and dtype)."""
        return load_vlm(self.path, self.device, self.dtype)

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any) -> LocalChatModel:
        """A copy whose system prompt lists `tools` (BaseTool, function, pydantic class or OpenAI dict)."""
        return self.model_copy(update={"tools": tuple(convert_to_openai_tool(t) for t in tools)})

    def complete(self, text: str, images: Sequence[Any] = ()) -> str:
        """Plain text in, text out (captions, chip classes): no tools, no protocol check."""
        return self.vlm.complete(text, images, max_new_tokens=self.max_new_tokens, **self.generate_kwargs)

    def _reply(self, messages: Sequence[BaseMessage], **kwargs: Any) -> AIMessage:
        vlm = self.vlm
        system = system_prompt(self.tools) if self.tools else "You are a helpful assistant for remote-sensing images."
        conv, images = to_conversation(messages, system, vlm.control_tokens())
        text = vlm.generate(conv, images, max_new_tokens=self.max_new_tokens, **{**self.generate_kwargs, **kwargs})
        n_before = sum(len(m.tool_calls) for m in messages if isinstance(m, AIMessage))
        msg = parse_tool_reply(text, first_id=n_before + 1)
        msg.response_metadata.update({"model_name": Path(self.path).name, "raw_text": text[:2000]})
        return msg

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        history = list(messages)
        msg = self._reply(history, **kwargs)
        for attempt in range(self.max_corrections + 1):
            if not self.tools or msg.tool_calls or msg.invalid_tool_calls or is_final(msg):
                msg.response_metadata["geodelta_format_corrections"] = attempt
                return ChatResult(generations=[ChatGeneration(message=msg)])
            if attempt == self.max_corrections:
                break
            names = ", ".join(t["function"]["name"] for t in self.tools)
            history += [AIMessage(content=message_text(msg)), HumanMessage(content=CORRECTION.replace("{tools}", names))]
            msg = self._reply(history, **kwargs)
        raise ModelError(
            f"The local model in {self.path} answered neither with a tool call (<tool_call>{{...}}</tool_call>) nor with "
            f"an ANSWER:/QUESTION: line after {self.max_corrections} corrections (last reply: "
            f"{message_text(msg)[:120]!r}): use an instruction-tuned model with tool calling (e.g. Qwen2.5-VL-3B-Instruct), "
            "set GEODELTA_FALLBACK_TO_EMBEDDED=true to let the embedded planner take over, or use --backend embedded."
        )


def make_local_model(settings: Any) -> LocalChatModel:
    """The registry factory: the model folder, device, dtype and token budget from settings; loads it now
    (once per process) so a bad folder fails before the first question."""
    model = LocalChatModel(
        path=str(check_model_folder(settings.vlm_path)),
        device=getattr(settings, "device", "auto"),
        dtype=getattr(settings, "vlm_dtype", "auto"),
        max_new_tokens=getattr(settings, "vlm_max_new_tokens", DEFAULT_MAX_NEW_TOKENS),
        max_corrections=getattr(settings, "max_corrections", 2),
    )
    model.vlm  # noqa: B018 - load (cached) now
    return model


def model_identity(settings: Any) -> dict[str, Any]:
    """{backend, path, config_sha256, weights_sha256} for the audit trail (hashes only for the local backend)."""
    backend = getattr(settings, "backend", "embedded")
    out: dict[str, Any] = {"backend": backend, "path": None, "config_sha256": None, "weights_sha256": None}
    if backend == "local":
        folder = check_model_folder(settings.vlm_path)
        out["path"] = str(folder)
        out["config_sha256"], out["weights_sha256"] = folder_hashes(folder)
    elif backend == "openai":
        out["path"] = f"{settings.openai_model}@{settings.openai_base_url}"
    return out


# --- perception second opinions ----------------------------------------------------------------


