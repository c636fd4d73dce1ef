"""The benchmark's pure inputs: workloads and their command-line forms, prompt files and synthetic
prompts, the request body a run sends, and the llama-bench table a depth run prints."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from benchmark.cli import UsageError, parser, workload_of
from benchmark.prompts import (
    Calibration,
    PromptFactory,
    PromptFileError,
    corpus_words,
    load_prompt_file,
    user_messages,
)
from benchmark.records import RunRecord
from benchmark.report import depth_markdown
from benchmark.transport import BodyOptions, RequestSpec, Target
from benchmark.workload import (
    MAX_LEVELS,
    DepthWorkload,
    LengthSpec,
    Sampling,
    SweepWorkload,
    parse_levels,
)

# --- workloads ---------------------------------------------------------------------------------


def error_fields(exc: ValidationError) -> list[str]:
    """Each error's location as dotted text, e.g. "sampling.temperature" or "concurrency.0"."""
    return [".".join(str(part) for part in error["loc"]) for error in exc.errors()]


@pytest.mark.parametrize(
    "axes",
    [
        {"concurrency": [1, 8], "rates": [2.0]},
        {},
    ],
    ids=["both", "neither"],
)
def test_a_sweep_takes_exactly_one_axis(axes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="either concurrency levels or request rates"):
        SweepWorkload(**axes)


def test_a_sweep_needs_a_request_count_or_a_duration() -> None:
    with pytest.raises(ValidationError, match="requests per level or seconds per level"):
        SweepWorkload(concurrency=[1], requests_per_level=None, seconds_per_level=None)
    # Either one alone is enough.
    assert SweepWorkload(concurrency=[1], requests_per_level=None, seconds_per_level=5).seconds_per_level == 5
    assert SweepWorkload(concurrency=[1]).requests_per_level == 32


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"concurrency": [1, 0]}, "concurrency.1"),
        ({"concurrency": [4097]}, "concurrency.0"),
        ({"rates": [-2.0]}, "rates.0"),
        ({"concurrency": [1], "requests_per_level": 0}, "requests_per_level"),
        ({"concurrency": [1], "seconds_per_level": 0}, "seconds_per_level"),
        ({"concurrency": [1], "warmup_requests": -1}, "warmup_requests"),
        ({"concurrency": [1], "sampling": {"temperature": 2.5}}, "sampling.temperature"),
        ({"concurrency": [1], "sampling": {"timeout_s": 0}}, "sampling.timeout_s"),
        ({"concurrency": [1], "limits": {"ttft_ms": 0}}, "limits.ttft_ms"),
        ({"concurrency": [1], "input_tokens": {"mean": 0}}, "input_tokens.mean"),
        ({"concurrency": [1], "arrival": "bursty"}, "arrival"),
        ({"concurrency": [1], "surprise": True}, "surprise"),
    ],
)
def test_out_of_range_sweep_values_are_refused_naming_the_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SweepWorkload(**fields)
    assert named in error_fields(caught.value)


def test_too_many_levels_are_refused() -> None:
    with pytest.raises(ValidationError, match=f"give 1-{MAX_LEVELS} levels, not {MAX_LEVELS + 1}"):
        SweepWorkload(concurrency=list(range(1, MAX_LEVELS + 2)))
    with pytest.raises(ValidationError, match="give 1-32 levels, not 0"):
        SweepWorkload(concurrency=[])


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"pp": [0]}, "pp.0"),
        ({"tg": [512, -1]}, "tg.1"),
        ({"depths": [-1]}, "depths.0"),
        ({"runs": 0}, "runs"),
        ({"runs": 101}, "runs"),
        ({"pp": []}, "pp"),
        ({"depths": list(range(MAX_LEVELS + 1))}, "depths"),
    ],
)
def test_out_of_range_depth_values_are_refused_naming_the_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DepthWorkload(**fields)
    assert named in error_fields(caught.value)


def test_depth_zero_is_a_depth() -> None:
    assert DepthWorkload(depths=[0, 4096]).depths == [0, 4096]


@pytest.mark.parametrize(
    ("workload", "summary"),
    [
        (
            SweepWorkload(concurrency=[1, 8, 64], requests_per_level=64),
            "concurrency 1,8,64 x 64 requests, isl 128, osl 128",
        ),
        (
            SweepWorkload(
                rates=[2.5, 5.0],
                requests_per_level=None,
                seconds_per_level=30,
                input_tokens=LengthSpec(mean=256, sd=32),
                output_tokens=LengthSpec(mean=64),
            ),
            "rate 2.5,5 x 30 s, isl 256±32, osl 64",
        ),
        (
            SweepWorkload(
                concurrency=[4], requests_per_level=100, seconds_per_level=60, prompt_file="chats.jsonl"
            ),
            "concurrency 4 x 100 requests or 60 s, chats.jsonl, osl 128",
        ),
        (
            DepthWorkload(pp=[512, 2048], tg=[32], depths=[0, 4096], runs=3),
            "pp 512,2048 tg 32 @ depth 0,4096 x 3 runs",
        ),
        (
            DepthWorkload(depths=[8192], runs=5, prefix_cache=True),
            "pp 512 tg 32 @ depth 8192 x 5 runs, prefix cache",
        ),
    ],
)
def test_summaries(workload: SweepWorkload | DepthWorkload, summary: str) -> None:
    assert workload.summary() == summary


def test_depth_cells_run_depth_outermost() -> None:
    workload = DepthWorkload(pp=[512, 2048], tg=[32, 128], depths=[0, 4096])
    assert workload.cells() == [
        (512, 32, 0),
        (512, 128, 0),
        (2048, 32, 0),
        (2048, 128, 0),
        (512, 32, 4096),
        (512, 128, 4096),
        (2048, 32, 4096),
        (2048, 128, 4096),
    ]


def test_a_workload_round_trips_through_its_stored_json() -> None:
    # A run stores model_dump(mode="json"); reading it back must give the same workload (seed included).
    workload = SweepWorkload(rates=[2.0], arrival="constant", sampling=Sampling(seed=42, temperature=0.7))
    assert SweepWorkload.model_validate(json.loads(json.dumps(workload.model_dump(mode="json")))) == workload


# --- levels and lengths as typed ---------------------------------------------------------------


def test_parse_levels_reads_comma_separated_values() -> None:
    levels = parse_levels("1, 8,64", integers=True)
    assert levels == [1, 8, 64]
    assert all(type(v) is int for v in levels)
    assert parse_levels("0.5,2", integers=False) == [0.5, 2.0]
    assert parse_levels("0,4096", integers=True, allow_zero=True) == [0, 4096]


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("0,-1", {"integers": True}, "every value must be above 0; '0' is not"),
        ("4,-1", {"integers": True}, "every value must be above 0; '-1' is not"),
        ("-1,0", {"integers": True, "allow_zero": True}, "every value must be 0 or more; '-1' is not"),
        ("a,2", {"integers": True}, "levels are whole numbers separated by commas, e.g. 1,8,64; 'a' is not"),
        ("1.5", {"integers": True}, "'1.5' is not"),
        ("2,x", {"integers": False}, "levels are numbers separated by commas, e.g. 1,8,64; 'x' is not"),
        ("1,,2", {"integers": True}, "'' is not"),
    ],
)
def test_parse_levels_names_the_bad_item(text: str, kwargs: dict[str, bool], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_levels(text, **kwargs)


@pytest.mark.parametrize(
    ("text", "mean", "sd", "label"),
    [
        ("128", 128, 0.0, "128"),
        ("128:16", 128, 16.0, "128±16"),
        ("128+-16", 128, 16.0, "128±16"),
        ("128±16", 128, 16.0, "128±16"),
        (" 128 : 2.5 ", 128, 2.5, "128±2.5"),
    ],
)
def test_length_spec_parses(text: str, mean: int, sd: float, label: str) -> None:
    spec = LengthSpec.parse(text)
    assert (spec.mean, spec.sd, spec.label()) == (mean, sd, label)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "a length is MEAN or MEAN:SD"),
        ("128:", "a length is MEAN or MEAN:SD"),
        (":16", "a length is MEAN or MEAN:SD"),
        ("128:16:2", "a length is MEAN or MEAN:SD"),
        ("abc", "with numbers"),
        ("12.5", "with numbers"),
        ("128:x", "with numbers"),
        ("0", "greater than or equal to 1"),
        ("128:-1", "greater than or equal to 0"),
    ],
)
def test_length_spec_refuses_bad_forms(text: str, message: str) -> None:
    # pydantic's ValidationError is a ValueError too: the CLI catches both as one.
    with pytest.raises(ValueError, match=re.escape(message)):
        LengthSpec.parse(text)


def test_length_spec_refuses_an_infinite_spread() -> None:
    with pytest.raises(ValueError, match="sd"):
        LengthSpec.parse("128:inf")


def test_the_cli_names_the_workload_field_it_refuses() -> None:
    args = parser().parse_args(["sweep", "--url", "http://x", "--concurrency", "1", "--warmup", "-1"])
    with pytest.raises(UsageError, match=r"^warmup_requests: Input should be greater than or equal to 0$"):
        workload_of(args)
    args = parser().parse_args(["depth", "--url", "http://x", "--runs", "0"])
    with pytest.raises(UsageError, match=r"^runs: "):
        workload_of(args)


def test_the_cli_defaults_to_32_requests_unless_a_duration_is_given() -> None:
    def sweep(*extra: str) -> SweepWorkload:
        workload = workload_of(
            parser().parse_args(["sweep", "--url", "http://x", "--concurrency", "1", *extra])
        )
        assert isinstance(workload, SweepWorkload)
        return workload

    assert (sweep().requests_per_level, sweep().seconds_per_level) == (32, None)
    assert (sweep("--seconds", "10").requests_per_level, sweep("--seconds", "10").seconds_per_level) == (
        None,
        10,
    )
    assert sweep("--seconds", "10", "--requests", "5").requests_per_level == 5


# --- prompt files ------------------------------------------------------------------------------


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


CHAT = json.dumps({"messages": [{"role": "user", "content": "Hello there"}]})


def test_a_prompt_file_line_that_is_not_json_is_named(tmp_path: Path) -> None:
    # The blank line counts: the number is the line an editor shows.
    path = write_lines(tmp_path / "p.jsonl", CHAT, "", '{"messages": [')
    with pytest.raises(PromptFileError) as caught:
        load_prompt_file(path)
    assert str(caught.value).startswith(f"{path}:3: not JSON (")


@pytest.mark.parametrize(
    "line",
    [
        '{"prompt": "hi"}',
        '{"messages": []}',
        '{"messages": [{"content": "no role"}]}',
        '{"messages": [{"role": "user"}]}',
        '{"messages": [{"role": 1, "content": "x"}]}',
        '[{"role": "user", "content": "ok"}, "not a message"]',
        "42",
        '"a string"',
    ],
)
def test_a_prompt_file_line_of_the_wrong_shape_is_named(tmp_path: Path, line: str) -> None:
    path = write_lines(tmp_path / "p.jsonl", CHAT, line)
    with pytest.raises(PromptFileError, match=re.escape(f'{path}:2: expected {{"messages": ')):
        load_prompt_file(path)


@pytest.mark.parametrize("text", ["", "\n\n   \n"], ids=["empty", "blank lines"])
def test_a_prompt_file_without_conversations_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PromptFileError, match=re.escape(f"prompt file {path} holds no conversations")):
        load_prompt_file(path)


def test_a_missing_prompt_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.jsonl"
    with pytest.raises(PromptFileError, match=re.escape(f"cannot read prompt file {path}: No such file")):
        load_prompt_file(path)


def test_a_prompt_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps({"messages": [{"role": "user", "content": "café"}]}).encode("utf-16"))
    with pytest.raises(PromptFileError, match=re.escape(f"prompt file {path} is not UTF-8 text")):
        load_prompt_file(path)


def test_a_prompt_file_takes_both_shapes_and_keeps_extra_fields(tmp_path: Path) -> None:
    multi_turn = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a prime.", "name": "ana"},
        {"role": "assistant", "content": "Seven."},
        {"role": "user", "content": [{"type": "text", "text": "Another?"}]},
    ]
    path = write_lines(tmp_path / "p.jsonl", CHAT, "", json.dumps(multi_turn), "   ")
    assert load_prompt_file(path) == [[{"role": "user", "content": "Hello there"}], multi_turn]


# --- synthetic prompts -------------------------------------------------------------------------


def test_calibration_recovers_an_exact_line() -> None:
    tokens_per_word, overhead = 1.25, 7.0
    samples = [(w, round(tokens_per_word * w + overhead)) for w in (48, 160, 384)]
    fitted = Calibration.fit(samples)
    assert fitted.per_word == pytest.approx(tokens_per_word)
    assert fitted.overhead == pytest.approx(overhead)
    assert fitted.words_for(round(tokens_per_word * 200 + overhead)) == 200
    assert fitted.content_words_for(250) == 200  # text inside a bigger prompt pays no overhead


@pytest.mark.parametrize(
    "samples",
    [[], [(48, 60)], [(48, 60), (48, 70)], [(48, 60), (384, 50)], [(48, 60), (384, 60)]],
    ids=["none", "one", "same words", "falling", "flat"],
)
def test_calibration_falls_back_to_the_default_on_degenerate_samples(samples: list[tuple[int, int]]) -> None:
    assert Calibration.fit(samples) == Calibration()


def test_calibration_never_asks_for_less_than_a_word_or_a_negative_overhead() -> None:
    # tokens = words - 5: a template cannot take tokens away, so the overhead is clipped at 0.
    fitted = Calibration.fit([(10, 5), (20, 15)])
    assert fitted.overhead == 0.0
    assert fitted.words_for(0) == 1
    assert Calibration().content_words_for(0) == 1


def test_prompts_are_reproducible_per_seed_except_their_tags() -> None:
    def draw(seed: int) -> list[Any]:
        factory = PromptFactory(seed)
        return [
            factory.unique_text(40).split(" ", 1)[1],  # the text after the tag
            factory.text(10),
            factory.length(128, 16),
            factory.gaps(4.0, 5, poisson=True),
            factory.pick([user_messages("a"), user_messages("b"), user_messages("c")]),
        ]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)
    # The tag is fresh per factory, so a repeated run never meets its own prompts in a cache.
    assert PromptFactory(7).tag() != PromptFactory(7).tag()


def test_unique_text_never_repeats_its_first_word() -> None:
    factory = PromptFactory(0)
    texts = [factory.unique_text(64) for _ in range(1000)]
    firsts = Counter(text.split()[0] for text in texts)
    assert firsts.most_common(1)[0][1] == 1
    assert all(len(text.split()) == 64 for text in texts)
    assert factory.unique_text(1).count(" ") == 0  # just the tag


def test_lengths_and_gaps_follow_the_workload() -> None:
    factory = PromptFactory(3)
    assert {factory.length(128, 0) for _ in range(20)} == {128}
    spread = [factory.length(128, 16) for _ in range(2000)]
    assert min(spread) >= 1
    assert len(set(spread)) > 20
    assert 120 < sum(spread) / len(spread) < 136
    assert factory.gaps(4.0, 3, poisson=False) == [0.25, 0.25, 0.25]
    gaps = factory.gaps(4.0, 4000, poisson=True)
    assert 0.23 < sum(gaps) / len(gaps) < 0.27
    assert len(set(gaps)) == len(gaps)


def test_the_corpus_is_natural_text() -> None:
    words = corpus_words()
    assert len(words) > 5000
    assert len(set(words)) > 1000
    common = Counter(w.lower().strip(".,;:") for w in words).most_common(3)
    assert {w for w, _ in common} <= {"the", "of", "and", "to", "shall"}
    alphabetic = sum(1 for w in words if re.fullmatch(r"[\"(]*[A-Za-z][A-Za-z'\-]*[.,;:!?\")]*", w))
    assert alphabetic / len(words) > 0.9


# --- what a request sends ----------------------------------------------------------------------


SPEC = RequestSpec(user_messages("hi"), max_tokens=64, requested_prompt_tokens=2)


def test_the_body_asks_for_the_length_and_for_usage() -> None:
    body = json.loads(BodyOptions(temperature=0.5, seed=9).body("served", SPEC))
    assert body == {
        "model": "served",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 64,
        "temperature": 0.5,
        "stream": True,
        "stream_options": {"include_usage": True},
        "seed": 9,
        "ignore_eos": True,
        "min_tokens": 64,
    }


def test_the_body_drops_length_controls_and_seed_when_told() -> None:
    body = json.loads(BodyOptions(seed=None, length_controls=False).body("served", SPEC))
    assert not {"ignore_eos", "min_tokens", "seed"} & body.keys()
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 64


@pytest.mark.parametrize(
    "base",
    [
        "http://127.0.0.1:8000",
        "http://127.0.0.1:8000/",
        "http://127.0.0.1:8000/v1",
        "http://127.0.0.1:8000/v1/",
    ],
)
def test_the_chat_url_has_one_v1(base: str) -> None:
    target = Target(base_url=base, served_model="m")
    assert target.chat_url == "http://127.0.0.1:8000/v1/chat/completions"
    assert target.root_url == "http://127.0.0.1:8000"


def test_a_prefixed_base_url_keeps_its_prefix() -> None:
    # A proxy that serves the API under a path: only a trailing /v1 is special.
    assert Target("http://gw/openai/v1", "m").chat_url == "http://gw/openai/v1/chat/completions"
    assert Target("http://gw/openai", "m").chat_url == "http://gw/openai/v1/chat/completions"


def test_the_api_key_goes_in_the_header_and_nowhere_else() -> None:
    target = Target("http://h", "m", api_key="sk-SECRET")
    assert target.headers()["Authorization"] == "Bearer sk-SECRET"
    assert "sk-SECRET" not in repr(target)
    assert "Authorization" not in Target("http://h", "m").headers()


# --- the depth table ---------------------------------------------------------------------------


def depth_run(**fields: Any) -> RunRecord:
    cells = [
        {
            "pp": 512,
            "tg": 128,
            "depth": 0,
            "pp_tps": {"mean": 1000.0, "sd": 5.0},
            "tg_tps": {"mean": 50.0, "sd": 0.5},
        },
        {
            "pp": 512,
            "tg": 128,
            "depth": 4096,
            "pp_tps": {"mean": 812.345, "sd": None},
            "tg_tps": {"mean": None},
        },
    ]
    defaults: dict[str, Any] = {
        "run_id": "r1",
        "kind": "depth",
        "base_url": "http://127.0.0.1:8100",
        "workload": {},
        "started_at": 0.0,
        "model_id": "m",
        "engine": "llamacpp",
        "served_model": "served-name",
        "results": {"cells": cells},
    }
    return RunRecord(**{**defaults, **fields})


def test_the_depth_table_has_llama_bench_rows() -> None:
    assert depth_markdown(depth_run()).splitlines() == [
        "| model | engine | test | t/s |",
        "| --- | --- | ---: | ---: |",
        "| m | llamacpp | pp512 | 1000.00 ± 5.00 |",
        "| m | llamacpp | tg128 | 50.00 ± 0.50 |",
        "| m | llamacpp | pp512 @ d4096 | 812.35 |",
        "| m | llamacpp | tg128 @ d4096 | - |",
    ]


def test_the_depth_table_names_a_bare_url_run_by_its_served_model() -> None:
    text = depth_markdown(depth_run(model_id=None, engine=None, results={"cells": []}))
    assert text.splitlines() == ["| model | engine | test | t/s |", "| --- | --- | ---: | ---: |"]
    row = depth_markdown(depth_run(model_id=None, engine=None)).splitlines()[2]
    assert row == "| served-name | ? | pp512 | 1000.00 ± 5.00 |"
