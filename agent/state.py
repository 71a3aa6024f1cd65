"""Graph state: JSON-plain (messages, ids, paths, numbers) so SQLite checkpoints stay portable."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.channels.untracked_value import UntrackedValue
from langgraph.graph.message import add_messages


class AgentState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    # The composed Answer of this run only: returned by invoke / streamed, never checkpointed (it holds every
    # region, 10-100 KB per question, and a follow-up composes its own from the messages).
    answer: Annotated[dict[str, Any] | None, UntrackedValue(dict)]


def question_message(text: str, *, before: str | None = None, after: str | None = None, images: list[str] | None = None,
                     bands: str | None = None) -> HumanMessage:
    """A user question; the images it names (and their declared band roles) travel in additional_kwargs so
    any planner can see them."""
    g: dict[str, Any] = {"question": True, "before": before, "after": after, "images": images or []}
    if bands:
        g["bands"] = bands
    return HumanMessage(content=text, additional_kwargs={"geodelta": g})


def current_turn(messages: list[AnyMessage]) -> list[AnyMessage]:
    """Messages since the last user question (clarification replies stay inside the turn)."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, HumanMessage) and m.additional_kwargs.get("geodelta", {}).get("question"):
            return messages[i:]
    return messages
