"""`build_graph(settings, model, checkpointer, tools, auditor)`: plan -> tools -> plan ... -> answer.

Nothing is compiled at import time, so tests inject a scripted model and a temporary database.
"""

from __future__ import annotations

import time
from typing import Any, Literal, cast

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import BaseTool
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.prebuilt.tool_node import ToolInvocationError
from langgraph.types import interrupt
from pydantic import BaseModel

from geodelta.agent.answer import compose
from geodelta.agent.audit import Auditor, current_run
from geodelta.agent.state import AgentState, current_turn
from geodelta.errors import ModelError
from geodelta.settings import Settings
from geodelta.tools.workspace import Workspace


def invalid_arguments_message(e: ToolInvocationError) -> str:
    """What the model sees when its arguments fail the tool's schema: the validation message, to correct the call.

    LangGraph infers the handled exception types from this annotation. It must name ONE class: under
    `from __future__ import annotations` a union annotation is a string LangGraph cannot read, and every
    tool error became "'types.UnionType' object has no attribute '__mro__'". A `GeoDeltaError` raised by
    a tool is turned into an error message by the audit interceptor (`Auditor.wrap_tool_call`).
    """
    return f"Error: invalid arguments: {e}"


def build_graph(settings: Settings, model: Any, checkpointer: Any, tools: list[BaseTool], auditor: Auditor, workspace: Workspace, *, fallback: Any = None):
    """Compile the agent graph. `model` is any LangChain chat model with `bind_tools`; `fallback` (the
    embedded planner) takes over when the model fails and settings allow it."""
    bound = model.bind_tools(tools)
    bound_fallback = fallback.bind_tools(tools) if fallback is not None else None
    # every GeoDelta tool is a StructuredTool with a pydantic args model
    schemas = cast(dict[str, type[BaseModel]], {t.name: t.args_schema for t in tools})

    def call_planner(messages: list) -> AIMessage:
        t0 = time.perf_counter()
        try:
            if getattr(model, "_llm_type", "") == "geodelta-embedded":
                msg = bound.invoke(messages)
            else:
                from geodelta.agent.toolcalls import with_corrections

                msg = with_corrections(bound, messages, schemas, settings.max_corrections)
        except ModelError as exc:
            auditor.record("error", actor="model", error=str(exc), model=auditor.model_name)
            if bound_fallback is None:
                raise
            auditor.record("plan", actor="system", result={"fallback": "embedded", "reason": str(exc)})
            msg = bound_fallback.invoke(messages)
        auditor.record("llm_call", actor="model", model=auditor.model_name, duration_ms=(time.perf_counter() - t0) * 1000,
                       result={"tool_calls": [{"name": c["name"], "args": c["args"]} for c in msg.tool_calls], "content": str(msg.content)[:500]})
        return msg

    def plan(state: AgentState) -> dict:
        return {"messages": [call_planner(state["messages"])]}

    def clarify(state: AgentState) -> dict:
        # interrupt() re-runs this node on resume: nothing before it has side effects.
        question = state["messages"][-1].additional_kwargs["geodelta_clarify"]
        reply = interrupt({"question": question})
        auditor.record("clarification", actor="user", args={"reply": reply}, result={"question": question})
        if isinstance(reply, dict):
            text = reply.get("text") or ""
            extra = {"geodelta": {"question": False, "before": reply.get("before"), "after": reply.get("after"), "images": reply.get("images") or []}}
        else:
            text, extra = str(reply), {"geodelta": {"question": False}}
        return {"messages": [HumanMessage(content=text, additional_kwargs=extra)]}

    def answer(state: AgentState) -> dict:
        run_id, thread_id = current_run.get()
        ans = compose(current_turn(state["messages"]), state["messages"], workspace, thread_id=thread_id, audit_id=run_id)
        return {"answer": ans.model_dump(mode="json")}

    def route(state: AgentState) -> Literal["tools", "clarify", "answer"]:
        last = state["messages"][-1]
        if isinstance(last, AIMessage) and last.tool_calls:
            return "tools"
        if isinstance(last, AIMessage) and last.additional_kwargs.get("geodelta_clarify"):
            return "clarify"
        return "answer"

    g = StateGraph(AgentState)
    g.add_node("plan", plan)
    g.add_node("tools", ToolNode(tools, wrap_tool_call=auditor.wrap_tool_call, handle_tool_errors=invalid_arguments_message))
    g.add_node("clarify", clarify)
    g.add_node("answer", answer)
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", route, {"tools": "tools", "clarify": "clarify", "answer": "answer"})
    g.add_edge("tools", "plan")
    g.add_edge("clarify", "plan")
    g.add_edge("answer", END)
    return g.compile(checkpointer=checkpointer)
