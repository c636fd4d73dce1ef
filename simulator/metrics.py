"""Request counters rendered as Prometheus text under each engine's metric names."""

from __future__ import annotations

from dataclasses import dataclass

# Logical counter -> (metric name per engine, Prometheus type). The names follow
# what each real server exports, so dashboards and scrapers see familiar series.
_NAMES: dict[str, dict[str, str]] = {
    "running": {
        "nim": "num_requests_running",
        "vllm": "vllm:num_requests_running",
        "llamacpp": "llamacpp:requests_processing",
    },
    "prompt_tokens": {
        "nim": "prompt_tokens_total",
        "vllm": "vllm:prompt_tokens_total",
        "llamacpp": "llamacpp:prompt_tokens_total",
    },
    "generation_tokens": {
        "nim": "generation_tokens_total",
        "vllm": "vllm:generation_tokens_total",
        "llamacpp": "llamacpp:tokens_predicted_total",
    },
    "requests": {
        "nim": "request_success_total",
        "vllm": "vllm:request_success_total",
        "llamacpp": "llamacpp:requests_total",
    },
}
_TYPES = {
    "running": "gauge",
    "prompt_tokens": "counter",
    "generation_tokens": "counter",
    "requests": "counter",
}


@dataclass
class Metrics:
    """Counters touched only from the event loop thread, so no lock is needed."""

    running: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    requests: int = 0

    def started(self, prompt_tokens: int) -> None:
        self.running += 1
        self.prompt_tokens += prompt_tokens

    def finished(self, generated_tokens: int) -> None:
        self.running -= 1
        self.generation_tokens += generated_tokens
        self.requests += 1

    def render(self, engine: str, model_id: str) -> str:
        lines: list[str] = []
        for key, names in _NAMES.items():
            name = names[engine]
            lines.append(f"# TYPE {name} {_TYPES[key]}")
            lines.append(f'{name}{{model_name="{model_id}"}} {getattr(self, key)}')
        return "\n".join(lines) + "\n"
