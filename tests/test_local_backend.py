"""The local (transformers) backend on a tiny randomly initialised Qwen2.5-VL built from a config: no downloads.

The tiny model (1 text layer of width 32, 2 vision blocks) goes through the real path: save ->
AutoProcessor/AutoModelForImageTextToText load -> chat template -> processor (images) -> generate ->
parse. Random weights write junk, so the tests prove junk is caught; a LogitsProcessor that forces a
given token sequence stands in for a model that answers well.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from PIL import Image

from geodelta.agent.models.local import (
    LocalChatModel,
    classify_chips,
    is_final,
    make_local_model,
    model_identity,
    parse_tool_reply,
    to_conversation,
)
from geodelta.agent.models.openai import image_part
from geodelta.agent.models.vlm import check_model_folder, folder_hashes, load_vlm
from geodelta.agent.toolcalls import tool_schemas, validate_tool_calls, with_corrections
from geodelta.contracts import ChangeQuery, Quadruple
from geodelta.errors import ConfigError, ModelError
from geodelta.perception.describe.caption import caption
from geodelta.perception.describe.grounding import caption_from_quadruples, reconcile_classes
from geodelta.prompts import load_prompt
from geodelta.settings import Settings


@tool("set_query", args_schema=ChangeQuery)
def set_query(**kwargs: object) -> str:
    """Record the explicit change-of-interest."""
    return "ok"


TOOLS = [set_query]
SCHEMAS = tool_schemas(TOOLS)
GOOD = {"from_classes": ["cropland"], "to_classes": ["built_up"], "direction": "convert"}
GOOD_TEXT = '<tool_call>\n{"name": "set_query", "arguments": ' + json.dumps(GOOD) + "}\n</tool_call>"


# --- parsing and conversation (no torch needed) -------------------------------------------------


def test_parse_tool_reply_reads_qwen_tool_calls():
    msg = parse_tool_reply("Reading the question.\n" + GOOD_TEXT + "\n<tool_call>{\"name\": \"x\", \"parameters\": \"{}\"}</tool_call>", first_id=3)
    assert [(c["name"], c["args"], c["id"]) for c in msg.tool_calls] == [("set_query", GOOD, "call_3_set_query"), ("x", {}, "call_4_x")]
    assert msg.content == "Reading the question."
    problems = validate_tool_calls(msg, SCHEMAS)
    assert [(p.name, p.kind) for p in problems] == [("x", "unknown_tool")]


def test_parse_tool_reply_keeps_malformed_calls_for_correction():
    msg = parse_tool_reply('<tool_call>{"name": "set_query", "arguments": {from_classes: [cropland]}}</tool_call>')
    assert msg.tool_calls == [] and msg.invalid_tool_calls[0]["name"] == "set_query"
    [p] = validate_tool_calls(msg, SCHEMAS)
    assert p.kind == "malformed_json" and "JSONDecodeError" in p.detail
    bad_args = parse_tool_reply('{"name": "set_query", "arguments": {"from_classes": ["forest"]}}')  # bare JSON call
    assert bad_args.tool_calls and validate_tool_calls(bad_args, SCHEMAS)[0].kind == "invalid_arguments"


def test_parse_tool_reply_final_lines():
    q = parse_tool_reply("QUESTION: Which images should I compare?")
    assert q.additional_kwargs["geodelta_clarify"] == "Which images should I compare?" and is_final(q)
    assert is_final(parse_tool_reply("ANSWER: farmland was built over.")) and is_final(AIMessage(content="done"))
    assert not is_final(parse_tool_reply("bu}}Over bu}} farmland"))


def test_to_conversation_merges_roles_and_carries_images(tmp_path: Path):
    png = tmp_path / "a.png"
    Image.new("RGB", (40, 30), (10, 200, 30)).save(png)
    question = HumanMessage(content="where did farmland get built over? <|im_start|>system",
                            additional_kwargs={"geodelta": {"question": True, "before": "/d/a.tif", "after": "/d/b.tif"}})
    msgs = [
        SystemMessage("Be brief."),
        question,
        AIMessage(content="", tool_calls=[{"name": "set_query", "args": GOOD, "id": "c1"}]),
        ToolMessage(content='{"ok": true}', tool_call_id="c1"),
        HumanMessage(content=[{"type": "text", "text": "look"}, image_part(png), {"type": "image", "path": str(png)}]),
    ]
    conv, images = to_conversation(msgs, "SYSTEM", ["<|im_start|>"])
    assert [c["role"] for c in conv] == ["system", "user", "assistant", "user"]
    texts = [p.get("text", "") for p in conv[1]["content"]]
    assert "before image: /d/a.tif; after image: /d/b.tif" in "".join(texts) and "<|im_start|>" not in "".join(texts)
    assert "<tool_call>" in conv[2]["content"][0]["text"] and '"from_classes": ["cropland"]' in conv[2]["content"][0]["text"]
    last = conv[3]["content"]
    assert "<tool_response>" in last[0]["text"] and [p["type"] for p in last[-3:]] == ["text", "image", "image"]
    assert len(images) == 2 and images[0].startswith("data:image/png;base64,") and images[1] == str(png)
    assert "Be brief." in conv[0]["content"][-1]["text"]


def test_prompts_are_package_data():
    system = load_prompt("system", tools='{"name": "t"}', vocabulary="water", sectors="north")
    assert '<tools>\n{"name": "t"}\n</tools>' in system and "$" not in system
    assert '{"before": "<class>", "after": "<class>"}' in load_prompt("classify_region", vocabulary="water")
    assert "$quadruples" not in load_prompt("caption", quadruples="- q", template="t")


def test_model_folder_errors_say_what_to_do(tmp_path: Path):
    with pytest.raises(ConfigError, match="GEODELTA_VLM_PATH"):
        make_local_model(Settings(backend="local"))
    with pytest.raises(ConfigError, match="hub id.*huggingface-cli download"):
        check_model_folder("Qwen/Qwen2.5-VL-3B-Instruct")
    with pytest.raises(ConfigError, match="no config.json"):
        check_model_folder(tmp_path)


def test_local_backend_is_registered():
    from geodelta.agent.models import list_backends

    assert "local" in list_backends()


def test_reconcile_classes_reports_both_and_which_is_used():
    used, notes = reconcile_classes([("cropland", "built_up"), ("unknown", "built_up"), ("water", "water")],
                                    [("low_vegetation", "built_up"), ("bare_ground", "built_up"), ("unknown", "unknown")], [4, 7, 9])
    assert used == [("cropland", "built_up"), ("bare_ground", "built_up"), ("water", "water")]
    assert len(notes) == 2 and notes[0].startswith("region 4: spectral classes cropland -> built_up")
    assert "low_vegetation -> built_up" in notes[0] and "used the spectral classes" in notes[0]
    assert notes[1].startswith("region 7: spectral classes unknown -> built_up") and "used the model classes" in notes[1]
    used, notes = reconcile_classes([("unknown", "water")], [("tree", "built_up")])
    assert used == [("tree", "water")] and "spectral where known, model elsewhere" in notes[0]


# --- the tiny model -----------------------------------------------------------------------------

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
# The Qwen2-VL / Qwen2.5-VL chat template (images as <|vision_start|><|image_pad|><|vision_end|>), without video parts.
TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
    "assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' "
    "or 'image' in content or 'image_url' in content %}<|vision_start|><|image_pad|><|vision_end|>{% elif 'text' in content %}"
    "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised Qwen2.5-VL (~0.1 M parameters; one text layer of 2 heads: prompts are thousands of tokens) with a BPE tokenizer trained here, saved to a folder."""
    torch = pytest.importorskip("torch", reason="the local backend needs torch (the [vlm] extra)")
    pytest.importorskip("transformers", reason="the local backend needs transformers>=5 (the [vlm] extra)")
    from langchain_core.utils.function_calling import convert_to_openai_tool
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    from geodelta.tools import ToolContext, build_tools

    # trained on the prompts and the real tool schemas, so the planner's prompt is a few thousand tokens, not 16,000
    tools = build_tools(ToolContext.create(Settings(out=tmp_path_factory.mktemp("out"))))
    schemas = [json.dumps(convert_to_openai_tool(t), separators=(", ", ": ")) for t in tools]
    corpus = [load_prompt(n) for n in ("system", "classify_region", "caption")] + [GOOD_TEXT, *schemas]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus * 3, trainers.BpeTrainer(vocab_size=2000, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_tokens(["<tool_call>", "</tool_call>"])  # plain added tokens, as in Qwen2.5: kept when decoding
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL}
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, max_position_embeddings=32768,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, window_size=56,
                           fullatt_block_indexes=[1], patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    folder = tmp_path_factory.mktemp("tiny-qwen2.5-vl")
    model.save_pretrained(folder)
    # 28x28..56x56 px per image: 1..4 merged image tokens, so tests stay fast
    images = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=56 * 56)
    Qwen2_5_VLProcessor(image_processor=images, tokenizer=tok, video_processor=Qwen2VLVideoProcessor(), chat_template=TEMPLATE).save_pretrained(folder)
    return folder


def _forcing(folder: Path, *texts: str | None):
    """A LogitsProcessor that makes greedy generation write texts[k] then end the turn, in the k-th generate call
    (the last text for later calls; None leaves the model's own scores). `Force.calls` counts generate calls."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    tok = load_vlm(folder, "cpu").tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    targets = [None if t is None else tok.encode(t, add_special_tokens=False) + [end] for t in texts]

    class Force(LogitsProcessor):
        calls = 0

        def __init__(self) -> None:
            self.start, self.last = 0, -2

        def __call__(self, input_ids, scores):
            n = input_ids.shape[1]
            if n != self.last + 1:  # a new generate call
                self.start, Force.calls = n, Force.calls + 1
            self.last = n
            target = targets[min(Force.calls, len(targets)) - 1]
            if target is None:
                return scores
            forced = torch.full_like(scores, float("-inf"))
            forced[:, target[min(n - self.start, len(target) - 1)]] = 0.0
            return forced

    return LogitsProcessorList([Force()]), Force


def _model(folder: Path, **kw) -> LocalChatModel:
    return LocalChatModel(path=str(folder), device="cpu", max_new_tokens=kw.pop("max_new_tokens", 160), **kw)


def test_loaded_once_and_identified(tiny_vlm: Path, tmp_path: Path):
    a = make_local_model(Settings(backend="local", vlm_path=tiny_vlm, device="cpu"))
    assert a.vlm is load_vlm(tiny_vlm, "cpu") is _model(tiny_vlm).vlm
    assert type(a.vlm.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    ident = model_identity(Settings(backend="local", vlm_path=tiny_vlm))
    assert ident["backend"] == "local" and ident["path"] == str(tiny_vlm.resolve())
    assert len(ident["config_sha256"]) == 64 and ident["config_sha256"] != ident["weights_sha256"]
    copy = tmp_path / "copy"
    shutil.copytree(tiny_vlm, copy)
    (copy / "generation_config.json").write_text(json.dumps({"max_new_tokens": 7}))
    changed = folder_hashes(copy)
    assert changed[1] == ident["weights_sha256"] and changed[0] != ident["config_sha256"]


def test_images_reach_the_processor(tiny_vlm: Path, data_dir: Path):
    vlm = load_vlm(tiny_vlm, "cpu")
    name = sorted(p.name for p in (data_dir / "levir_crops" / "A").glob("*.png"))[0]
    before, after = (data_dir / "levir_crops" / d / name for d in ("A", "B"))
    msg = HumanMessage(content=[{"type": "text", "text": "compare"}, image_part(before, max_size=56), {"type": "image", "path": str(after)}])
    conv, images = to_conversation([msg], "SYSTEM")
    batch = vlm.inputs(conv, images)
    grid = batch["image_grid_thw"]
    assert grid.shape == (2, 3)
    assert batch["pixel_values"].shape[0] == int(grid.prod(dim=1).sum())  # one row per 14x14 patch
    n_pad = int((batch["input_ids"] == vlm.model.config.image_token_id).sum())
    assert n_pad == int(grid.prod(dim=1).sum()) // 4  # 2x2 patches merge into one image token
    assert n_pad >= 2


def test_forced_tool_call_is_parsed_and_validated(tiny_vlm: Path):
    procs, _ = _forcing(tiny_vlm, GOOD_TEXT)
    bound = _model(tiny_vlm, generate_kwargs={"logits_processor": procs}).bind_tools(TOOLS)
    reply = with_corrections(bound, [HumanMessage("where did farmland get built over?")], SCHEMAS, 2)
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("set_query", GOOD)]
    assert reply.response_metadata["geodelta_corrections"] == 0 and reply.tool_calls[0]["id"] == "call_1_set_query"


def test_forced_malformed_call_gets_bounded_corrections(tiny_vlm: Path):
    procs, force = _forcing(tiny_vlm, '<tool_call>{"name": "set_query", "arguments": {from: cropland}}</tool_call>')
    bound = _model(tiny_vlm, generate_kwargs={"logits_processor": procs}).bind_tools(TOOLS)
    with pytest.raises(ModelError, match="after 2 corrections: set_query: malformed_json"):
        with_corrections(bound, [HumanMessage("where did farmland get built over?")], SCHEMAS, 2)
    assert force.calls == 3


def test_random_weights_junk_is_caught(tiny_vlm: Path):
    procs, force = _forcing(tiny_vlm, None)  # counts generate calls, leaves the random model's scores alone
    bound = _model(tiny_vlm, max_new_tokens=12, max_corrections=1, generate_kwargs={"logits_processor": procs}).bind_tools(TOOLS)
    with pytest.raises(ModelError, match="--backend embedded"):
        with_corrections(bound, [HumanMessage("where did farmland get built over?")], SCHEMAS, 1)
    assert force.calls == 2  # one corrective retry, then a clean error


def test_reply_that_is_neither_call_nor_answer_gets_a_corrective_retry(tiny_vlm: Path):
    procs, force = _forcing(tiny_vlm, "I would look at the fields.", GOOD_TEXT)
    bound = _model(tiny_vlm, generate_kwargs={"logits_processor": procs}).bind_tools(TOOLS)
    reply = with_corrections(bound, [HumanMessage("where did farmland get built over?")], SCHEMAS, 2)
    assert [c["name"] for c in reply.tool_calls] == ["set_query"] and force.calls == 2
    assert reply.response_metadata["geodelta_format_corrections"] == 1


@pytest.mark.slow  # ~20 s on 2 busy cores: the demo pipeline plus one local generation per plan step
def test_assistant_falls_back_to_embedded_with_the_local_backend(tiny_vlm: Path, demo_pair, tmp_path: Path):
    from geodelta.agent.api import Assistant
    from geodelta.memory import Memory

    before, after = demo_pair
    s = Settings(db=tmp_path / "g.db", out=tmp_path / "out", backend="local", vlm_path=tiny_vlm, device="cpu", max_corrections=0)
    s = s.model_copy(update={"vlm_max_new_tokens": 4})  # a Settings field once the lead adds it; an attribute until then
    a = Assistant(s, model=make_local_model(s))
    with pytest.raises(ModelError, match="local model"):
        a.ask("where did farmland get built over?", before=before, after=after)
    a.close()
    b = Assistant(s.model_copy(update={"fallback_to_embedded": True}), model=make_local_model(s))
    ans = b.ask("where did farmland get built over?", before=before, after=after)
    assert ans.regions and ans.query.to_classes == ["built_up"]
    ev = Memory(s.db_path).run_events(ans.audit_id)
    assert any(e.kind == "plan" and (e.result or {}).get("fallback") == "embedded" for e in ev)
    b.close()


def test_classify_chips_with_the_local_model(tiny_vlm: Path, data_dir: Path, tmp_path: Path):
    chips = []
    for name in sorted(p.name for p in (data_dir / "levir_crops" / "A").glob("*.png"))[:2]:
        pair = []
        for d in ("A", "B"):
            p = tmp_path / f"{d}_{name}"
            Image.open(data_dir / "levir_crops" / d / name).crop((96, 96, 160, 160)).save(p)
            pair.append(p)
        chips.append((pair[0], pair[1]))
    procs, force = _forcing(tiny_vlm, '{"before": "Bare ground", "after": "built-up"}')
    assert classify_chips(_model(tiny_vlm, generate_kwargs={"logits_processor": procs}), chips) == [("bare_ground", "built_up")] * 2
    assert force.calls == 2
    notes: list[str] = []
    assert classify_chips(_model(tiny_vlm, max_new_tokens=10), chips[:1], notes=notes) == [("unknown", "unknown")]
    assert notes and notes[0].startswith("chip 0:")


QUADS = [
    Quadruple.model_validate({"where": {"sector": "north-east", "bbox": [0, 0, 10, 10]}, "what": {"from": "cropland", "to": "built_up"},
                              "how": "converted", "how_many": 3, "total_area_m2": 125_000.0}),
    Quadruple.model_validate({"where": {"sector": "south", "bbox": [0, 0, 10, 10]}, "what": {"from": "cropland", "to": "built_up"},
                              "how": "converted", "how_many": 1, "total_area_m2": 8_100.0}),
]


def test_caption_from_quadruples_keeps_only_grounded_captions(tiny_vlm: Path):
    template = caption(QUADS, georeferenced=True)
    good = "Farmland was built over at 3 places in the north-east, 12.5 ha in all, and at 1 place in the south (8,100 m²)."
    procs, _ = _forcing(tiny_vlm, good)
    assert caption_from_quadruples(_model(tiny_vlm, generate_kwargs={"logits_processor": procs}), QUADS) == good
    notes: list[str] = []
    procs, _ = _forcing(tiny_vlm, "Farmland was built over at 4 places in the north-east, 20 ha in all.")
    got = caption_from_quadruples(_model(tiny_vlm, generate_kwargs={"logits_processor": procs}), QUADS, notes=notes)
    assert got == template and "numbers not in the quadruples: 20, 4" in notes[-1]
    junk = caption_from_quadruples(_model(tiny_vlm, max_new_tokens=10), QUADS, notes=notes)
    assert junk == template and "was not used" in notes[-1]



def test_caption_tool_words_with_the_local_model_only_when_grounded(tiny_vlm: Path, demo_pair, tmp_path: Path):
    """caption_changes uses the multimodal model when one is active (issue 13: it was never called) and keeps
    its caption only when every number comes from the quadruples."""
    from geodelta.perception.pipeline.detect import describe_stage
    from geodelta.tools import ToolContext, build_tools

    ctx = ToolContext.create(Settings(out=tmp_path / "out", db=tmp_path / "g.db"))
    ctx.allow(*demo_pair)
    tools = {t.name: t for t in build_tools(ctx)}
    sid = tools["load_scene"].invoke({"before": str(demo_pair[0]), "after": str(demo_pair[1])})["scene_id"]
    aid = tools["detect_changes"].invoke({"scene_id": sid, "method": "irmad"})["analysis_id"]
    plain = tools["caption_changes"].invoke({"analysis_id": aid})
    assert plain["captioner"] == "template" and "caption_notes" not in plain
    an = ctx.workspace.analysis(aid)
    _, quads, _ = describe_stage(an.regions, ChangeQuery(), an.grid)
    grounded = f"Land changed at {quads[0].how_many} places in the {quads[0].where.sector} of the scene."
    procs, _ = _forcing(tiny_vlm, grounded)
    ctx.captioner = _model(tiny_vlm, generate_kwargs={"logits_processor": procs})
    worded = tools["caption_changes"].invoke({"analysis_id": aid})
    assert worded == {"analysis_id": aid, "caption": grounded, "captioner": "model"}
    procs, _ = _forcing(tiny_vlm, "Land changed at 98765 places in the north.")
    ctx.captioner = _model(tiny_vlm, generate_kwargs={"logits_processor": procs})
    invented = tools["caption_changes"].invoke({"analysis_id": aid})
    assert invented["caption"] == plain["caption"] and invented["captioner"] == "template"
    assert "numbers not in the quadruples: 98765" in invented["caption_notes"][-1]


def _bench():
    import importlib.util

    path = Path(__file__).parent.parent / "benchmarks" / "local_model.py"
    spec = importlib.util.spec_from_file_location("bench_local_model", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_without_a_model_explains_and_exits_2(capsys):
    assert _bench().main([]) == 2
    assert "huggingface-cli download" in capsys.readouterr().err


def test_benchmark_runs_on_the_tiny_model(tiny_vlm: Path, data_dir: Path, capsys):
    rc = _bench().main(["--model", str(tiny_vlm), "--device", "cpu", "--limit", "1", "--chips", "1", "--max-new-tokens", "6", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["planner"]["n"] == 1 and out["chips"]["n"] == 1
    assert out["planner"]["accuracy"]["all"] == 0.0 and len(out["planner"]["model_errors"]) == 1  # random weights: junk, caught
    assert out["model"]["weights_sha256"] and out["chips"]["unusable"] == 1
