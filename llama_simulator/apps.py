from django.apps import AppConfig


class LlamaSimulatorConfig(AppConfig):
    """Registers the `llama_simulator` management command; the package has no models."""

    name = "llama_simulator"
    verbose_name = "Llama API simulator"
