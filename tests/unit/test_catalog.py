"""The model catalog: real YAML files in tmp_path, the exact messages a user would read."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from lifecycle.catalog import ID_PATTERN, Catalog, Engine, ModelSpec, RuntimeKind, load_catalog
from lifecycle.catalog.__main__ import main
from lifecycle.catalog.errors import CatalogError
from tests import catalogs
from tests.support import REPO_ROOT

# One valid entry per runtime; tests change a field or two and look at what the loader says.
PROCESS = {
    "id": "proc",
    "url": "http://127.0.0.1:8100",
    "engine": "llamacpp",
    "runtime": "process",
    "load_command": "llama-server --port 8100",
}
COMPOSE = {
    "id": "comp",
    "url": "http://127.0.0.1:8000",
    "engine": "nim",
    "runtime": "compose",
    "compose": {"file": "stack.yaml", "service": "svc"},
}
DOCKER = {
    "id": "dock",
    "url": "http://127.0.0.1:8200",
    "engine": "vllm",
    "runtime": "docker",
    "docker": {"image": "vllm/vllm-openai:latest", "ports": {8000: 8200}},
}
EXTERNAL = {
    "id": "ext",
    "url": "http://127.0.0.1:8300",
    "engine": "openai",
    "runtime": "external",
    "manual_start": "run ./start.sh",
}


def write_text(tmp_path: Path, text: str, name: str = "models.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def write_catalog(tmp_path: Path, *entries: dict[str, Any], name: str = "models.yaml") -> Path:
    """A catalog of ``entries`` next to a compose file that defines service 'svc'."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "stack.yaml").write_text("services:\n  svc:\n    image: x\n", encoding="utf-8")
    return catalogs.write_catalog(path, *entries)


def entry(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``base`` with ``changes``; a change of None removes the field."""
    merged = {**base, **changes}
    return {key: value for key, value in merged.items() if value is not None}


def error_lines(path: Path) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    message = str(caught.value)
    assert "Traceback" not in message
    assert message.splitlines() == caught.value.lines
    return caught.value.lines


def single_error(path: Path) -> str:
    lines = error_lines(path)
    assert len(lines) == 1, lines
    return lines[0]


# --- the file as a whole -------------------------------------------------------------------


def test_missing_file_names_it_and_says_how_to_fix(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    line = single_error(path)
    assert line.startswith(f"{path}: ")
    assert "catalog file not found" in line
    assert "DXG_CATALOG" in line


def test_broken_yaml_gives_line_and_column(tmp_path: Path) -> None:
    path = write_text(
        tmp_path,
        """
        models:
          - id: a
            url: "http://127.0.0.1:8000
            engine: nim
        """,
    )
    line = single_error(path)
    assert line.startswith(f"{path}:")
    assert "invalid YAML at line 5, column 1" in line
    assert "found unexpected end of stream" in line


def test_broken_indentation_points_at_the_bad_line(tmp_path: Path) -> None:
    path = write_text(
        tmp_path,
        """
        models:
          - id: a
             url: http://127.0.0.1:8000
        """,
    )
    assert single_error(path).startswith(f"{path}:3: invalid YAML at line 3, column 9: ")


def test_empty_file(tmp_path: Path) -> None:
    path = write_text(tmp_path, "# nothing yet\n")
    assert single_error(path) == (
        f"{path}: the catalog is empty; it must be a mapping with a 'models:' list at the top"
    )


def test_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write_text(tmp_path, "- id: a\n- id: b\n")
    assert single_error(path) == (
        f"{path}: the catalog must be a mapping with a 'models:' list at the top, not a list"
    )


def test_unknown_top_level_key_and_missing_models(tmp_path: Path) -> None:
    path = write_text(tmp_path, "modles: []\n")
    assert error_lines(path) == [
        f"{path}:1: unknown top-level key 'modles'; the allowed keys are models, swarm_manager",
        f"{path}: there is no 'models:' list; the catalog must be a mapping with a 'models:' list at the top",
    ]


def test_models_must_be_a_list(tmp_path: Path) -> None:
    path = write_text(tmp_path, "models:\n  a: {url: x}\n")
    assert single_error(path) == (
        f"{path}:1: 'models' must be a list of entries, each starting with '- id: ...', not a mapping"
    )


def test_entries_that_are_not_mappings(tmp_path: Path) -> None:
    path = write_text(tmp_path, "models:\n  - just-a-name\n  -\n")
    assert error_lines(path) == [
        f"{path}: model #1: must be a mapping of fields (id, url, ...), not text",
        f"{path}: model #2: must be a mapping of fields (id, url, ...), not an empty value",
    ]


def test_wrong_shapes_are_named_in_yaml_words(tmp_path: Path) -> None:
    path = write_catalog(
        tmp_path,
        entry(COMPOSE, compose="stack.yaml"),
        entry(DOCKER, docker={**DOCKER["docker"], "volumes": {"a": "/b"}}),
        {**EXTERNAL, 1: "x"},
    )
    assert error_lines(path) == [
        f"{path}:6: model 'comp', field 'compose': must be a mapping (name: value, ...), not text",
        f"{path}:15: model 'dock', field 'docker.volumes': must be a list (- item, ...), not a mapping",
        f"{path}:22: model 'ext', field '1': is not a field name; names are text",
    ]


def test_empty_models_list_is_valid(tmp_path: Path) -> None:
    catalog = load_catalog(write_text(tmp_path, "models: []\n"))
    assert len(catalog) == 0
    assert catalog.warnings == ()


def test_repeated_key_is_reported_not_swallowed(tmp_path: Path) -> None:
    path = write_text(
        tmp_path,
        """
        models:
          - id: a
            url: http://127.0.0.1:8000
            engine: nim
            url: http://127.0.0.1:9000
            runtime: external
        """,
    )
    assert single_error(path) == (
        f"{path}:5: key 'url' appears twice in the same mapping; YAML would keep only the last one, "
        "so remove one of them"
    )


def test_yaml_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    path = write_text(
        tmp_path,
        """
        models:
          - &base {id: a, url: "http://127.0.0.1:8000", engine: nim, runtime: external}
          - <<: *base
            id: b
            url: http://127.0.0.1:8001
        """,
    )
    catalog = load_catalog(path)
    assert catalog.ids == ["a", "b"]
    assert catalog["b"].port == 8001


# --- fields of one model --------------------------------------------------------------------


def test_unknown_field_lists_the_allowed_ones(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, entry(PROCESS, load_cmd="x"))
    line = single_error(path)
    assert line.startswith(
        f"{path}:7: model 'proc', field 'load_cmd': unknown field (did you mean 'load_command'?)"
    )
    assert (
        "allowed fields: api_key_env, compose, description, docker, engine, env, format, health_path," in line
    )


def test_unknown_field_in_a_runtime_section_lists_that_section(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, entry(COMPOSE, compose={"file": "stack.yaml", "service": "svc", "x": 1}))
    assert single_error(path) == (
        f"{path}:9: model 'comp', field 'compose.x': unknown field; "
        "allowed fields in 'compose': file, project, service"
    )


def test_duplicate_id_says_where_the_first_one_is(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, PROCESS, EXTERNAL, entry(PROCESS, url="http://127.0.0.1:8101"))
    assert single_error(path) == (
        f"{path}:12: model 'proc', field 'id': duplicate id 'proc': model #1 at line 2 already uses it; "
        "ids must be unique"
    )


@pytest.mark.parametrize("bad_id", ["GPT-OSS", "-lead", "has space", "a/b", "../x", "x" * 65, "café", "ok\n"])
def test_bad_id_quotes_the_regex_and_an_example(tmp_path: Path, bad_id: str) -> None:
    path = write_catalog(tmp_path, EXTERNAL, entry(PROCESS, id=bad_id))
    line = single_error(path)
    assert line.startswith(f"{path}:7: model #2, field 'id': {bad_id!r} is not a valid id")
    assert ID_PATTERN in line
    assert "e.g. 'gpt-oss-20b'" in line


def test_missing_id_names_the_model_by_position(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, EXTERNAL, entry(PROCESS, id=None))
    assert single_error(path) == (
        f"{path}:7: model #2, field 'id': is required; give a short name like 'gpt-oss-20b'"
    )


def test_missing_url(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, entry(EXTERNAL, url=None))
    assert single_error(path) == (
        f"{path}:2: model 'ext', field 'url': is required; give the server's base URL, e.g. http://127.0.0.1:8000"
    )


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("localhost:8000", "is not an http(s) URL with a host"),
        ("ftp://127.0.0.1:21", "is not an http(s) URL with a host"),
        ("http://:8000", "is not an http(s) URL with a host"),
        ("http://127.0.0.1", "has no port"),
        ("http://127.0.0.1:99999", "has an invalid port; use 1-65535"),
        ("http://127.0.0.1:80a", "has an invalid port; use 1-65535"),
        ("http://127.0.0.1:8000/v1", "must be the server root without a path such as /v1"),
        ("http://user:pw@127.0.0.1:8000", "must not contain credentials"),
    ],
)
def test_bad_url(tmp_path: Path, url: str, complaint: str) -> None:
    line = single_error(write_catalog(tmp_path, entry(EXTERNAL, url=url)))
    assert "model 'ext', field 'url': " in line
    assert complaint in line
    assert "user:pw" not in line  # a credential in the url is never echoed back


def test_url_is_normalised_and_gives_host_and_port(tmp_path: Path) -> None:
    spec = load_catalog(write_catalog(tmp_path, entry(EXTERNAL, url=" https://Box.local:8443/ ")))["ext"]
    assert spec.url == "https://Box.local:8443"
    assert (spec.host, spec.port) == ("box.local", 8443)


def test_unknown_engine_lists_the_allowed_values(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, entry(EXTERNAL, engine="ollama"))
    assert single_error(path) == (
        f"{path}:4: model 'ext', field 'engine': 'ollama' is not allowed; "
        "use one of: nim, llamacpp, vllm, openai"
    )


def test_unknown_runtime_lists_the_allowed_values(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, entry(EXTERNAL, runtime="systemd"))
    assert single_error(path) == (
        f"{path}:5: model 'ext', field 'runtime': 'systemd' is not allowed; "
        "use one of: compose, docker, process, external, swarm, kubernetes"
    )


def test_missing_engine_and_runtime_say_what_to_write(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, entry(EXTERNAL, engine=None, runtime=None, manual_start=None))
    assert error_lines(path) == [
        f"{path}:2: model 'ext', field 'engine': is required; use one of: nim, llamacpp, vllm, openai",
        f"{path}:2: model 'ext', field 'runtime': is required; say how the server is started, "
        "one of: compose, docker, process, external, swarm, kubernetes",
    ]


def test_health_path_must_start_with_a_slash(tmp_path: Path) -> None:
    line = single_error(write_catalog(tmp_path, entry(EXTERNAL, health_path="health")))
    assert line.endswith("field 'health_path': 'health' must start with '/', e.g. /v1/health/ready")


def test_numbers_are_accepted_where_text_is_expected(tmp_path: Path) -> None:
    spec = load_catalog(write_catalog(tmp_path, entry(EXTERNAL, size=7, env={"CUDA_VISIBLE_DEVICES": 0})))[
        "ext"
    ]
    assert spec.size == "7"
    assert spec.env == {"CUDA_VISIBLE_DEVICES": "0"}


def test_defaults_derived_from_other_fields(tmp_path: Path) -> None:
    catalog = load_catalog(write_catalog(tmp_path, COMPOSE, PROCESS, entry(EXTERNAL, startup_timeout_s=30)))
    nim, proc, ext = catalog["comp"], catalog["proc"], catalog["ext"]
    assert (nim.name, nim.served_model) == ("comp", "comp")
    # A NIM's first load on a DGX Spark takes well over 5 min; other engines get less.
    assert (nim.startup_timeout_s, proc.startup_timeout_s, ext.startup_timeout_s) == (1800, 600, 30)
    assert (nim.supports_tools, nim.simulated, nim.health_path, nim.model_path) == (False, False, None, None)


def test_startup_timeout_must_be_positive(tmp_path: Path) -> None:
    line = single_error(write_catalog(tmp_path, entry(EXTERNAL, startup_timeout_s=0)))
    assert "field 'startup_timeout_s': Input should be greater than 0 (got 0)" in line


def test_model_path_is_relative_to_the_catalog(tmp_path: Path) -> None:
    path = write_catalog(tmp_path / "conf", entry(PROCESS, model_path="weights/m.gguf"))
    assert load_catalog(path)["proc"].model_path == tmp_path / "conf" / "weights" / "m.gguf"


# --- process runtime and the {python} placeholder -------------------------------------------


@pytest.mark.parametrize(
    ("command", "complaint"),
    [
        ("   ", "is empty; give the command that starts the server"),
        ("'' --port 8100", "is empty; give the command that starts the server"),
        (
            'llama-server --alias "my model',
            "cannot be split into words: No closing quotation (check the quotes)",
        ),
        ("python {python} -m x", "{python} is only replaced as the first word (the program to run)"),
    ],
)
def test_bad_load_command(tmp_path: Path, command: str, complaint: str) -> None:
    path = write_catalog(tmp_path, entry(PROCESS, load_command=command))
    line = single_error(path)
    assert line.startswith(f"{path}:6: model 'proc', field 'load_command': ")
    assert line.endswith(complaint)


def test_python_placeholder_becomes_the_interpreter(tmp_path: Path) -> None:
    command = "{python} -m simulator --port 8100 --name 'two words'"
    spec = load_catalog(write_catalog(tmp_path, entry(PROCESS, load_command=command)))["proc"]
    assert spec.argv() == [sys.executable, "-m", "simulator", "--port", "8100", "--name", "two words"]
    assert spec.argv(python="/opt/py/bin/python3")[0] == "/opt/py/bin/python3"
    # The placeholder stays in the stored command: only argv() resolves it.
    assert spec.load_command == command


def test_argv_without_placeholder_is_just_split(tmp_path: Path) -> None:
    spec = load_catalog(write_catalog(tmp_path, PROCESS))["proc"]
    assert spec.argv() == ["llama-server", "--port", "8100"]


def test_argv_of_a_model_without_command_raises(tmp_path: Path) -> None:
    spec = load_catalog(write_catalog(tmp_path, EXTERNAL))["ext"]
    with pytest.raises(ValueError, match="model 'ext' has no load_command"):
        spec.argv()


def test_process_workdir_defaults_to_the_catalog_folder(tmp_path: Path) -> None:
    path = write_catalog(tmp_path / "conf", PROCESS, entry(PROCESS, id="other", workdir="../srv"))
    catalog = load_catalog(path)
    assert catalog["proc"].workdir == tmp_path / "conf"
    assert catalog["other"].workdir == tmp_path / "conf" / ".." / "srv"


def test_load_command_without_the_url_port_is_a_warning(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, entry(PROCESS, load_command="llama-server --port 9999"))
    assert load_catalog(path).warnings == (
        f"{path}:2: model 'proc', field 'load_command': doesn't mention port 8100 from the url; "
        "make sure the server listens there",
    )


# --- runtime settings must match the runtime ------------------------------------------------


def test_process_without_load_command(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, entry(PROCESS, load_command=None))
    assert single_error(path) == (
        f"{path}:2: model 'proc', field 'load_command': is required with runtime process; add the command "
        "that starts the server, e.g. 'llama-server -m m.gguf --port 8100'"
    )


def test_compose_without_compose_section(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, entry(COMPOSE, compose=None))
    assert single_error(path) == (
        f"{path}:2: model 'comp', field 'compose': is required with runtime compose; "
        "add 'compose: {file: compose/nim.yaml, service: <name>}'"
    )


def test_docker_without_docker_section_or_image(tmp_path: Path) -> None:
    path = write_catalog(
        tmp_path, entry(DOCKER, docker=None), entry(DOCKER, id="dock2", docker={"ports": {8000: 8200}})
    )
    lines = error_lines(path)
    assert lines[0].startswith(f"{path}:2: model 'dock', field 'docker': is required with runtime docker; ")
    assert lines[1] == (
        f"{path}:10: model 'dock2', field 'docker.image': is required; give the image to run, "
        "e.g. nvcr.io/nim/openai/gpt-oss-20b:latest"
    )


def test_settings_for_another_runtime_are_errors(tmp_path: Path) -> None:
    path = write_catalog(
        tmp_path,
        entry(COMPOSE, load_command="llama-server --port 8000", manual_start="by hand"),
        entry(PROCESS, docker=DOCKER["docker"], workdir="/srv"),
        entry(EXTERNAL, compose=COMPOSE["compose"]),
    )
    assert error_lines(path) == [
        f"{path}:9: model 'comp', field 'load_command': only applies to runtime process, "
        "but this model has runtime compose",
        f"{path}:10: model 'comp', field 'manual_start': only applies to runtime external, "
        "but this model has runtime compose",
        f"{path}:16: model 'proc', field 'docker': only applies to runtime docker, "
        "but this model has runtime process",
        f"{path}:26: model 'ext', field 'compose': only applies to runtime compose, "
        "but this model has runtime external",
    ]


def test_can_load_per_runtime(tmp_path: Path) -> None:
    catalog = load_catalog(write_catalog(tmp_path, PROCESS, COMPOSE, DOCKER, EXTERNAL))
    assert {spec.id: (spec.runtime, spec.can_load) for spec in catalog} == {
        "proc": (RuntimeKind.PROCESS, True),
        "comp": (RuntimeKind.COMPOSE, True),
        "dock": (RuntimeKind.DOCKER, True),
        "ext": (RuntimeKind.EXTERNAL, False),
    }


# --- compose references ---------------------------------------------------------------------


def test_compose_file_resolves_relative_to_the_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_catalog(tmp_path / "conf", COMPOSE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    compose = load_catalog(path)["comp"].compose
    assert compose is not None
    assert compose.file == tmp_path / "conf" / "stack.yaml"
    assert compose.file.is_file()
    assert (compose.service, compose.project) == ("svc", None)


def test_missing_compose_file(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, entry(COMPOSE, compose={"file": "nope.yaml", "service": "svc"}))
    assert single_error(path) == (
        f"{path}:7: model 'comp', field 'compose.file': compose file {tmp_path / 'nope.yaml'} not found "
        "(a relative path starts at the catalog's folder)"
    )


def test_compose_service_must_exist(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, entry(COMPOSE, compose={"file": "stack.yaml", "service": "other"}))
    assert single_error(path) == (
        f"{path}:8: model 'comp', field 'compose.service': 'other' is not a service in "
        f"{tmp_path / 'stack.yaml'}; it defines: svc"
    )


def test_compose_file_without_services(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, COMPOSE)
    (tmp_path / "stack.yaml").write_text("version: '3'\n", encoding="utf-8")
    assert single_error(path).endswith(f"compose file {tmp_path / 'stack.yaml'} has no 'services:' mapping")


def test_compose_project_name_is_checked(tmp_path: Path) -> None:
    path = write_catalog(
        tmp_path, entry(COMPOSE, compose={"file": "stack.yaml", "service": "svc", "project": "My App"})
    )
    assert "field 'compose.project': 'My App' is not a compose project name" in single_error(path)


# --- docker settings ------------------------------------------------------------------------


def test_docker_settings_are_normalised(tmp_path: Path) -> None:
    docker = {
        "image": "img:1",
        "ports": ["8200:8000", "9000:9001"],
        "volumes": ["./cache:/cache", "~/models:/models:ro", "named:/data"],
        "gpus": [0, "1"],
        "shm_size": "16gb",
    }
    settings = load_catalog(write_catalog(tmp_path, entry(DOCKER, docker=docker)))["dock"].docker
    assert settings is not None
    assert settings.ports == {8000: 8200, 9001: 9000}
    assert [(v.source, v.target, v.read_only) for v in settings.volumes] == [
        (str(tmp_path / "cache"), "/cache", False),
        (str(Path("~/models").expanduser()), "/models", True),
        ("named", "/data", False),
    ]
    assert (settings.gpus, settings.shm_size) == (("0", "1"), "16gb")


def test_docker_gpus_all_or_none(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, entry(DOCKER, docker={**DOCKER["docker"], "gpus": "all"}))
    assert load_catalog(path)["dock"].docker.gpus == "all"  # type: ignore[union-attr]
    assert load_catalog(write_catalog(tmp_path, DOCKER))["dock"].docker.gpus is None  # type: ignore[union-attr]


def test_docker_command_and_entrypoint_are_word_lists_and_mem_limit_a_size() -> None:
    def docker_spec(**docker: Any) -> ModelSpec:
        return ModelSpec(**entry(DOCKER, docker={**DOCKER["docker"], **docker}))

    spec = docker_spec(command=["--port", 8000], entrypoint=["python3.11"], mem_limit="2g")
    assert spec.docker is not None
    assert (spec.docker.command, spec.docker.entrypoint, spec.docker.mem_limit) == (
        ("--port", "8000"),
        ("python3.11",),
        "2g",
    )
    with pytest.raises(ValidationError, match="write a non-empty list of words"):
        docker_spec(command="--port 8000")
    with pytest.raises(ValidationError, match="is not a size"):
        docker_spec(mem_limit="plenty")


@pytest.mark.parametrize(
    ("change", "field", "complaint"),
    [
        # Unquoted 8200:8000 is a base-60 number in YAML 1.1.
        (
            {"ports": [8200 * 60 + 8000]},
            "docker.ports",
            'write each port as a quoted "host:container" string',
        ),
        (
            {"ports": ["127.0.0.1:8200:8000"]},
            "docker.ports",
            'write each port as a quoted "host:container" string',
        ),
        ({"ports": {8000: 70000}}, "docker.ports[8000]", "Input should be less than or equal to 65535"),
        ({"ports": {8000: 8201}}, "docker.ports", "no entry publishes the url's port 8200"),
        ({"volumes": ["/a"]}, "docker.volumes", "write 'host:container' or 'host:container:ro'"),
        ({"volumes": ["/a:/b:rx"]}, "docker.volumes", "write 'host:container' or 'host:container:ro'"),
        ({"volumes": ["/a:b"]}, "docker.volumes[0].target", "container path 'b' must be absolute"),
        ({"gpus": "some"}, "docker.gpus", "use 'all', a list of device ids like [0, 1], or leave it out"),
        ({"shm_size": "lots"}, "docker.shm_size", "'lots' is not a size; write it like '16gb' or '512m'"),
    ],
)
def test_bad_docker_settings(tmp_path: Path, change: dict[str, Any], field: str, complaint: str) -> None:
    path = write_catalog(tmp_path, entry(DOCKER, docker={**DOCKER["docker"], **change}))
    line = single_error(path)
    assert f"model 'dock', field '{field}': " in line
    assert complaint in line


# --- env --------------------------------------------------------------------------------------


def test_env_null_takes_the_value_from_the_environment(tmp_path: Path) -> None:
    env = {"NGC_API_KEY": None, "NIM_CACHE": None, "LOG_LEVEL": "debug"}
    spec = load_catalog(write_catalog(tmp_path, entry(COMPOSE, env=env)))["comp"]
    assert spec.env == env
    environ = {"NGC_API_KEY": "nvapi-secret", "PATH": "/bin"}
    assert spec.resolved_env(environ) == {"NGC_API_KEY": "nvapi-secret", "LOG_LEVEL": "debug"}
    assert spec.missing_env(environ) == ["NIM_CACHE"]


def test_env_never_appears_in_dumps_or_repr(tmp_path: Path) -> None:
    spec = load_catalog(write_catalog(tmp_path, entry(COMPOSE, env={"HF_TOKEN": "hf_abc"})))["comp"]
    assert "env" not in spec.model_dump()
    assert "hf_abc" not in repr(spec)
    assert "hf_abc" not in spec.model_dump_json()


def test_env_value_in_the_file_that_looks_secret_is_a_warning(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, entry(COMPOSE, env={"NGC_API_KEY": "nvapi-123", "NIM_CACHE": None}))
    (warning,) = load_catalog(path).warnings
    assert warning == (
        f"{path}:2: model 'comp', field 'env.NGC_API_KEY': has a value written in the catalog; if it is a "
        "secret, write 'NGC_API_KEY: null' and set it in the app's environment instead"
    )
    assert "nvapi-123" not in warning


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"1BAD": "x"}, "'1BAD' is not an environment variable name"),
        ({"WITH-DASH": "x"}, "'WITH-DASH' is not an environment variable name"),
        ({"FLAG": True}, "FLAG: the value must be text (quote it) or null"),
        ({"LIST": [1]}, "LIST: the value must be text (quote it) or null"),
    ],
)
def test_bad_env(tmp_path: Path, env: dict[str, Any], complaint: str) -> None:
    line = single_error(write_catalog(tmp_path, entry(EXTERNAL, env=env)))
    assert "model 'ext', field 'env': " in line
    assert complaint in line


# --- the whole catalog ------------------------------------------------------------------------


def test_all_problems_are_reported_at_once_one_per_line(tmp_path: Path) -> None:
    path = write_catalog(
        tmp_path,
        entry(PROCESS, url="nope"),
        entry(EXTERNAL, engine="gpt"),
        entry(COMPOSE, id="Bad ID"),
        entry(DOCKER, extra=1),
    )
    lines = error_lines(path)
    assert len(lines) == 4
    assert all(line.startswith(f"{path}:") for line in lines)
    assert [line.split(": ")[1] for line in lines] == [
        "model 'proc', field 'url'",
        "model 'ext', field 'engine'",
        "model #3, field 'id'",
        "model 'dock', field 'extra'",
    ]


def test_two_loadable_models_on_one_port_is_a_warning(tmp_path: Path) -> None:
    path = write_catalog(
        tmp_path,
        PROCESS,
        entry(PROCESS, id="proc2"),
        entry(EXTERNAL, url="http://127.0.0.1:8000"),  # external: the user's business
        COMPOSE,
    )
    catalog = load_catalog(path)
    assert catalog.ids == ["proc", "proc2", "ext", "comp"]
    assert catalog.warnings == (
        f"{path}:7: models 'proc' and 'proc2' share port 8100; only one of them can be loaded at a time",
    )


def test_catalog_mapping_interface(tmp_path: Path) -> None:
    catalog = load_catalog(write_catalog(tmp_path, EXTERNAL, PROCESS))
    assert isinstance(catalog, Catalog)
    assert catalog.path == tmp_path / "models.yaml"
    assert "ext" in catalog
    assert "nope" not in catalog
    assert catalog.get("nope") is None
    assert [spec.id for spec in catalog] == ["ext", "proc"]
    with pytest.raises(KeyError):
        catalog["nope"]


def test_spec_dump_carries_derived_fields_for_the_api(tmp_path: Path) -> None:
    dump = load_catalog(write_catalog(tmp_path, EXTERNAL))["ext"].model_dump(mode="json")
    assert dump["can_load"] is False
    assert dump["port"] == 8300
    assert dump["engine"] == "openai"


def test_spec_is_immutable(tmp_path: Path) -> None:
    spec = load_catalog(write_catalog(tmp_path, EXTERNAL))["ext"]
    with pytest.raises(ValueError, match="frozen"):
        spec.url = "http://127.0.0.1:1"  # type: ignore[misc]


def test_spec_can_be_built_in_code() -> None:
    spec = ModelSpec.model_validate(PROCESS)
    assert (spec.name, spec.served_model, spec.workdir, spec.engine) == (
        "proc",
        "proc",
        None,
        Engine.LLAMACPP,
    )


# --- the repo's own catalog and compose file -------------------------------------------------


# The seed's four models (the original feature note): users edit models.yaml, so only what the
# product promises is pinned here, not every field.
SEED_MODELS = {
    "gpt-oss-20b": (Engine.NIM, True),
    "gpt-oss-120b": (Engine.NIM, True),
    "deepseek-nvfp4": (Engine.OPENAI, False),
    "llama-nim": (Engine.NIM, False),
}


def test_default_catalog_is_valid_and_holds_the_seed_models() -> None:
    catalog = load_catalog(REPO_ROOT / "models.yaml")
    assert catalog.warnings == ()
    assert len({spec.port for spec in catalog}) == len(catalog), "two models on one port"
    for model_id, (engine, loadable) in SEED_MODELS.items():
        spec = catalog[model_id]
        assert (spec.engine, spec.can_load) == (engine, loadable), model_id
        if not loadable:
            assert spec.manual_start, f"{model_id} must say how it is started by hand"
    for spec in catalog:
        if spec.compose is not None:
            assert spec.compose.file.exists(), spec.id
            services = yaml.safe_load(spec.compose.file.read_text())["services"]
            assert spec.compose.service in services, spec.id
        if spec.env:
            # Secrets are passed through from the app's environment, never written in the file.
            assert all(value is None for name, value in spec.env.items() if "KEY" in name or "TOKEN" in name)


def test_default_catalog_can_be_tried_without_a_gpu() -> None:
    catalog = load_catalog(REPO_ROOT / "models.yaml")
    simulated = [spec for spec in catalog if spec.simulated]
    assert {spec.runtime for spec in simulated} >= {RuntimeKind.PROCESS, RuntimeKind.COMPOSE}
    assert all(spec.can_load for spec in simulated)
    process = next(spec for spec in simulated if spec.runtime == RuntimeKind.PROCESS)
    argv = process.argv(python="PY")
    assert argv[:3] == ["PY", "-m", "simulator"]
    assert argv[argv.index("--port") + 1] == str(process.port)


def test_nim_compose_file_has_the_real_services() -> None:
    services = yaml.safe_load((REPO_ROOT / "compose" / "nim.yaml").read_text(encoding="utf-8"))["services"]
    assert services["gpt-oss-20b"]["image"] == "nvcr.io/nim/openai/gpt-oss-20b:latest"
    assert services["gpt-oss-120b"]["image"] == "nvcr.io/nim/openai/gpt-oss-120b:latest"
    for name, port in (("gpt-oss-20b", 8000), ("gpt-oss-120b", 8010)):
        service = services[name]
        assert service["ports"] == [f"127.0.0.1:{port}:8000"]
        assert service["shm_size"] == "16gb"
        assert service["environment"] == ["NGC_API_KEY"]  # a pass-through, never a value
        assert service["restart"] == "no"
        assert service["volumes"] == ["${NIM_CACHE:-~/.cache/nim}:/opt/nim/.cache"]
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]


# --- the command line -------------------------------------------------------------------------


def test_cli_prints_models_and_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_catalog(tmp_path, PROCESS, entry(PROCESS, id="proc2"), EXTERNAL)
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: 3 models\n")
    assert "proc2" in out
    assert "ext " in out
    assert "manual" in out
    assert "warning: " in out
    assert "share port 8100" in out


def test_cli_prints_problems_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_catalog(tmp_path, entry(PROCESS, url=None), entry(EXTERNAL, engine="x"))
    assert main([str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 2
    assert "Traceback" not in captured.err


def test_cli_as_a_module(tmp_path: Path) -> None:
    bad = write_text(tmp_path, "models: [\n")
    run = subprocess.run(
        [sys.executable, "-m", "lifecycle.catalog", str(bad)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1
    assert run.stderr.startswith(f"{bad}:2: invalid YAML at line 2")
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("own", "default", "expected"),
    [(None, None, None), (None, 600.0, 600.0), (120.0, 600.0, 120.0), (0.0, 600.0, None), (30.0, None, 30.0)],
)
def test_idle_time_is_the_models_own_else_the_apps_and_0_means_never(
    own: float | None, default: float | None, expected: float | None
) -> None:
    fields = {} if own is None else {"idle_ttl_s": own}
    spec = ModelSpec.model_validate(catalogs.sim_process("m", 9000) | fields)
    assert spec.idle_after_s(default) == expected


def test_an_external_server_never_idles_out_and_a_negative_idle_time_is_refused() -> None:
    external = ModelSpec.model_validate(catalogs.external("ext", 9000) | {"idle_ttl_s": 60})
    assert external.idle_after_s(600.0) is None  # the app neither starts nor stops it
    with pytest.raises(ValidationError, match="idle_ttl_s"):
        ModelSpec.model_validate(catalogs.sim_process("m", 9000) | {"idle_ttl_s": -1})


def test_api_key_env_must_name_an_env_entry_and_resolves_from_the_apps_environment() -> None:
    keyed = catalogs.sim_process("m", 9000) | {"api_key_env": "M_KEY", "env": {"M_KEY": None}}
    assert ModelSpec.model_validate(keyed).api_key({"M_KEY": "k-1"}) == "k-1"
    assert ModelSpec.model_validate(keyed).api_key({}) is None
    assert ModelSpec.model_validate(catalogs.sim_process("m", 9000)).api_key({"M_KEY": "k-1"}) is None
    with pytest.raises(ValidationError, match="names 'M_KEY', which env does not list"):
        ModelSpec.model_validate(catalogs.sim_process("m", 9000) | {"api_key_env": "M_KEY"})
