"""Real components for tests and demos: a tiny GGUF model and a way to find llama.cpp's server."""
