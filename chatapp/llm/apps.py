from django.apps import AppConfig


class LlmConfig(AppConfig):
    name = "chatapp.llm"
    label = "llm"
    verbose_name = "Llama API"
